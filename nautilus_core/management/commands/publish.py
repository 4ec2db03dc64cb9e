from django.core.management.base import BaseCommand

from ._bus import cli_bus, parse_payload, payload_argument


class Command(BaseCommand):
    help = "Publish an action on the bus (the original `naut publish`)."

    def add_arguments(self, parser):
        payload_argument(parser)

    def handle(self, action_type, payload, **options):
        action = cli_bus().publish(action_type, parse_payload(payload))
        self.stdout.write(f"published {action.action_type} ({action.action_id})")
