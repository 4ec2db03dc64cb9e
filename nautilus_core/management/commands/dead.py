"""``manage.py dead list|replay|purge``: look at the dead-letter queue, send letters again, empty it.

    manage.py dead list [--service S] [--json]        each letter: number, when, service, routing key, reason, body
    manage.py dead replay [N ...] [--service S] [--broadcast]
    manage.py dead purge

``replay`` sends each selected letter (all, or numbers as ``list`` shows them) back to the
queue of the service that gave up on it (``--broadcast``: on the exchange, to every service
bound to its routing key) and takes it out of the dead-letter queue once the broker has it.
Letters are read without being acknowledged, so those not replayed stay where they were.
"""
import json

from django.core.management.base import BaseCommand, CommandError
from kombu import Queue

from ._bus import cli_bus


class Command(BaseCommand):
    help = "List, replay or purge the messages in the dead-letter queue (nautilus.dead)."

    def add_arguments(self, parser):
        parser.add_argument("verb", choices=["list", "replay", "purge"])
        parser.add_argument("numbers", nargs="*", type=int, help="replay only these letters (as `list` numbers them)")
        parser.add_argument("--service", help="only the letters of this service")
        parser.add_argument("--broadcast", action="store_true",
                            help="replay on the exchange under the routing key, not to the service's queue")
        parser.add_argument("--json", action="store_true", dest="as_json", help="list the records as JSON lines")

    def handle(self, verb, numbers, service=None, broadcast=False, as_json=False, **options):
        bus = cli_bus()
        if bus.app.conf.broker_url.startswith(("amqp", "pyamqp")):  # a letter is removed only once its copy is safe
            bus.app.conf.broker_transport_options = {**(bus.app.conf.broker_transport_options or {}),
                                                     "confirm_publish": True}
        queue = Queue(bus.dead_letter_queue.name, durable=True)
        with bus.app.connection_for_write() as connection:
            channel = connection.channel()
            bound = queue(channel)
            bound.declare()
            if verb == "purge":
                self.stdout.write(f"purged {bound.purge() or 0} dead letter(s)")
                return
            letters = list(_read_all(bound))
            chosen = [(n, message, record) for n, (message, record) in enumerate(letters, 1)
                      if (not numbers or n in numbers) and (not service or record.get("service") == service)]
            if verb == "list":
                for n, _, record in chosen:
                    self.stdout.write(json.dumps(record, default=str) if as_json else _line(n, record))
                self.stdout.write(f"{len(chosen)} of {len(letters)} dead letter(s)")
            else:
                unknown = sorted(set(numbers) - set(range(1, len(letters) + 1)))
                if unknown:
                    raise CommandError(f"no dead letter numbered {', '.join(map(str, unknown))}")
                for n, message, record in chosen:
                    try:
                        bus.replay(record, broadcast=broadcast)
                    except ValueError as exc:
                        self.stderr.write(f"#{n} kept: {exc}")
                        continue
                    message.ack()
                    self.stdout.write(f"replayed #{n} {record.get('routing_key') or ''}")
                self.stdout.write(f"replayed {len(chosen)} of {len(letters)} dead letter(s)")
            channel.close()  # what was not acknowledged goes back to the queue



def _read_all(bound):
    """Every message of the queue, unacknowledged, with its record (a dict)."""
    while True:
        message = bound.get(no_ack=False, accept=["json"])
        if message is None:
            return
        try:
            record = json.loads(message.body)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {"reason": "(not a dead-letter record)", "body": message.body}
        yield message, record


def _line(n, record):
    body = record.get("body")
    excerpt = body if isinstance(body, str) else json.dumps(body, default=str)
    excerpt = excerpt[:120] + ("…" if len(excerpt) > 120 else "")
    return (f"#{n} {record.get('dead_at', '?')} {record.get('service', '?')} {record.get('routing_key') or '-'} "
            f"(attempts {record.get('attempts', 1)}): {record.get('reason')}\n    {excerpt}")
