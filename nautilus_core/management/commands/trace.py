"""``manage.py trace ID``: the timeline of an action across every service (``nautilus_core.timeline``)."""
import json

from django.core.management.base import BaseCommand, CommandError

from nautilus_core.timeline import find, render, timeline

from ._bus import cli_bus


class Command(BaseCommand):
    help = ("Print what every service recorded of a trace: each action with its service, type, status, time "
            "and duration, indented by cause. ID is an action id, a trace id or a correlation id.")

    def add_arguments(self, parser):
        parser.add_argument("id", help="an action id, a trace id (32 hex digits) or a correlation id")
        parser.add_argument("--json", action="store_true", help="print the timeline as JSON, for tools")
        parser.add_argument("--timeout", type=float, default=2.0,
                            help="seconds to wait for the services' answers (default 2)")

    def handle(self, id, json=False, timeout=2.0, **options):  # noqa: A002  (the argument's name)
        if not id or len(id) > 255:
            raise CommandError("ID must be 1 to 255 characters.")
        bus = cli_bus()
        try:
            records, services = find(bus, id, timeout)
        finally:
            bus.close()
        roots = timeline(records)
        if json:
            self.stdout.write(_dumps({"id": id, "trace_ids": sorted({r["trace_id"] for r in records}),
                                      "services": services, "actions": roots}))
            return
        if not roots:
            raise CommandError(f"no service recorded {id} (answered: {', '.join(services) or 'none'})")
        for trace_id in sorted({r["trace_id"] for r in records}):
            self.stdout.write(f"trace {trace_id}")
        self.stdout.write(render(roots))
        self.stdout.write(f"({len(records)} records from {', '.join(services)})")


def _dumps(value):
    return json.dumps(value, indent=2)
