"""What ``publish`` and ``ask`` share: a bus for a process that runs no service."""
import json

from django.core.management.base import CommandError

from nautilus_core.bus import Bus, BrokerUnreachable, reach_broker
from nautilus_core.conf import nautilus_settings


def cli_bus():
    """A bus on the settings' broker; a broker that cannot be used stops the command with one line."""
    from nautilus_core.celery import app

    try:
        reach_broker(app.connection_for_write())
    except BrokerUnreachable as exc:
        raise CommandError(str(exc)) from None
    return Bus.from_settings(app, sender=nautilus_settings.SENDER)


def payload_argument(parser):
    parser.add_argument("action_type", help="e.g. create.recipe.pending")
    parser.add_argument("payload", nargs="?", default="{}", help="a JSON object (default {})")


def parse_payload(text):
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"The payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CommandError("The payload must be a JSON object.")
    return payload
