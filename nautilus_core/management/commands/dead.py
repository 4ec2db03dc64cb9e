"""``manage.py dead list|replay|purge``: look at the dead-letter queue, send letters again, empty it.

    manage.py dead list [--service S] [--json]        each letter: number, when, service, routing key, layer,
                                                      reason, body
    manage.py dead replay [N ...] [--service S] [--broadcast]
    manage.py dead purge

``replay`` sends each selected letter (all, or numbers as ``list`` shows them) back to the
queue of the service that gave up on it (``--broadcast``: on the exchange, to every service
bound to its routing key) and takes it out of the dead-letter queue once the broker has it.
Letters are read without being acknowledged, so those not replayed stay where they were.
A message RabbitMQ itself dead-lettered (a quorum queue's delivery limit) is shown with the
layer ``broker`` and replayed as it was.
"""
import json

from django.core.management.base import BaseCommand, CommandError

from nautilus_core.bus import declare

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
        with bus.app.connection_for_write() as connection:
            queue = declare(connection, bus.dead_letter_queue)
            channel = connection.channel()
            bound = queue(channel)
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
            record = _broker_letter(message)
        yield message, record


def _broker_letter(message):
    """A record for a message the broker dead-lettered itself (or anything else found in the queue)."""
    headers = dict(message.headers or {})
    deaths = headers.pop("x-death", None) or []
    reason = headers.pop("x-first-death-reason", None) or (deaths[0].get("reason") if deaths else None)
    queue = headers.pop("x-first-death-queue", None) or (deaths[0].get("queue") if deaths else None)
    headers.pop("x-first-death-exchange", None)
    headers.pop("x-delivery-count", None)
    body = message.body.decode("utf-8", errors="replace") if isinstance(message.body, bytes) else message.body
    if not reason:
        return {"layer": "broker", "reason": "(not a dead-letter record)", "body": body}
    keys = (deaths[0].get("routing-keys") or [None]) if deaths else [None]
    return {"layer": "broker", "reason": f"dead-lettered by the broker: {reason}", "kind": "message", "body": body,
            "queue": queue, "service": queue.removeprefix("nautilus.") if queue else None, "routing_key": keys[0],
            "headers": headers, "content_type": message.content_type, "content_encoding": message.content_encoding,
            "reply_to": message.properties.get("reply_to"), "correlation_id": message.properties.get("correlation_id")}


def _line(n, record):
    body = record.get("body")
    excerpt = body if isinstance(body, str) else json.dumps(body, default=str)
    excerpt = excerpt[:120] + ("…" if len(excerpt) > 120 else "")
    return (f"#{n} {record.get('dead_at', '?')} {record.get('service', '?')} {record.get('routing_key') or '-'} "
            f"[{record.get('layer', '?')}] (attempts {record.get('attempts', 1)}): {record.get('reason')}\n"
            f"    {excerpt}")
