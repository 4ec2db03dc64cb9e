"""``manage.py schema print`` and ``manage.py schema check``: a service's schema before deploy.

``print`` writes the service's part of the gateway's schema as SDL (a gateway: the cloud's whole schema).
``check`` compares it with what runs (``--against FILE``: with an SDL file ``print`` wrote) and lists
the breaking and dangerous changes; it exits 1 on a breaking change.
"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from nautilus_core.conf import nautilus_settings
from nautilus_core.schema_check import compare, newest_of_major, running_summaries, schema_of_sdl, service_schema, \
    sdl_of
from nautilus_core.service import get_service
from nautilus_core.versions import api_version_of


class Command(BaseCommand):
    help = ("A service's schema as the gateway serves it: `schema print` writes the SDL; `schema check` compares it "
            "with the running cloud's (or --against an SDL file) and exits 1 on a breaking change.")

    def add_arguments(self, parser):
        # one positional, not subparsers: Django's own options (--settings) then go anywhere on the line
        parser.add_argument("action", choices=["print", "check"],
                            help="print: write the SDL; check: list the breaking and dangerous changes "
                                 "(exit 1 on a breaking one)")
        parser.add_argument("--output", "-o", help="print: a file to write (default: standard output)")
        parser.add_argument("--against",
                            help="check: an SDL file written by `schema print` (default: the running cloud)")
        parser.add_argument("--wait", type=float, default=3.0,
                            help="check: seconds to collect the cloud's announcements after a roll call (default 3)")

    def handle(self, action, **options):
        try:
            service = get_service()
        except Exception as exc:  # noqa: BLE001  (any reason the service cannot load stops the command)
            raise CommandError(f"cannot load the service: {exc}") from None
        if action == "print":
            return self.print_schema(service, options.get("output"))
        return self.check_schema(service, options.get("against"), options["wait"])

    def print_schema(self, service, output):
        sdl = sdl_of(service_schema(service))
        if output:
            Path(output).write_text(sdl, encoding="utf-8")
            self.stderr.write(f"schema: wrote {output}")
        else:
            self.stdout.write(sdl, ending="")

    def check_schema(self, service, against, wait):
        summary = service.summarize()
        try:
            major, _ = api_version_of(summary)
        except ValueError as exc:
            raise CommandError(f"{service.name}: {exc}") from None
        new = service_schema(service, summary)
        this = f"{service.name} {summary.get('api_version')}"
        if against:
            try:
                old = schema_of_sdl(Path(against).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {against}: {exc}") from None
            what = against
        else:
            served = newest_of_major(self.announced(service, wait), major)
            if served is None:
                self.stdout.write(f"{this}: no replica of {service.name} {major}.x announced itself within {wait:g}s: "
                                  f"nothing runs that it could break (a new service or a new major).")
                return
            old, what = service_schema(service, served), f"{service.name} {served.get('api_version', '1.0')} (running)"
        breaking, dangerous = compare(old, new)
        self.stdout.write(f"{this} against {what}:")
        for description in breaking:
            self.stdout.write(f"  breaking: {description}")
        for description in dangerous:
            self.stdout.write(f"  dangerous: {description}")
        if breaking:
            raise CommandError(f"{this} has {len(breaking)} breaking change(s) against {what}: keep {major}.x "
                               f"compatible, or declare api_version = \"{major + 1}.0\" to serve it beside {major}.x.")
        self.stdout.write(f"  compatible: no breaking change ({len(dangerous)} dangerous).")

    def announced(self, service, wait):
        from nautilus_core.celery import app

        from ._bus import cli_bus

        bus = cli_bus()
        try:
            return running_summaries(app, bus, service.name, wait, exchange=nautilus_settings.EXCHANGE)
        finally:
            bus.close()
