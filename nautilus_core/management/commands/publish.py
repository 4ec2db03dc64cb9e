from django.core.management.base import BaseCommand, CommandError

from nautilus_core.actions import deadline_in, parse_time

from ._bus import cli_bus, parse_payload, payload_argument


class Command(BaseCommand):
    help = ("Publish an action on the bus without waiting (the original `naut publish`); "
            "it has no deadline unless given one.")

    def add_arguments(self, parser):
        payload_argument(parser)
        when = parser.add_mutually_exclusive_group()
        when.add_argument("--ttl", type=float, help="seconds from now after which the action must not be applied")
        when.add_argument("--deadline", help="the time (ISO-8601, UTC unless it says) after which it must not be")

    def handle(self, action_type, payload, ttl=None, deadline=None, **options):
        if ttl is not None:
            if not 0 < ttl < 10**9:
                raise CommandError("--ttl must be a positive number of seconds.")
            deadline = deadline_in(ttl)
        elif deadline is not None:
            moment = parse_time(deadline)
            if moment is None:
                raise CommandError(f"--deadline {deadline!r} is not an ISO-8601 time.")
            deadline = moment.isoformat()
        action = cli_bus().publish(action_type, parse_payload(payload), deadline=deadline)
        self.stdout.write(f"published {action.action_type} ({action.action_id})"
                          + (f", deadline {action.deadline}" if action.deadline else ""))
