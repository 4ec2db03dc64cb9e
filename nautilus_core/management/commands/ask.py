import json

from django.core.management.base import BaseCommand, CommandError

from nautilus_core.actions import ERROR, status_of
from nautilus_core.bus import AskTimeout, NoHandler
from nautilus_core.conf import nautilus_settings

from ._bus import cli_bus, parse_payload, payload_argument


class Command(BaseCommand):
    help = "Send an action and print the reply (the original `naut ask`); exits 1 on .error or timeout."

    def add_arguments(self, parser):
        payload_argument(parser)
        parser.add_argument("--timeout", type=float, default=None,
                            help="seconds to wait, and the action's deadline (default NAUTILUS_ASK_TIMEOUT)")

    def handle(self, action_type, payload, timeout, **options):
        bus = cli_bus()
        try:
            reply = bus.ask(action_type, parse_payload(payload), timeout=timeout or nautilus_settings.ASK_TIMEOUT)
        except (AskTimeout, NoHandler) as exc:
            raise CommandError(str(exc)) from None
        finally:
            bus.close()
        self.stdout.write(json.dumps(reply.to_dict(), indent=2))
        if status_of(reply.action_type) == ERROR:
            raise CommandError(f"{reply.action_type}: {reply.payload.get('message')}")
