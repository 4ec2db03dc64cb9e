"""Group commit: the worker applies the actions it has taken from its queue in one transaction.

``ActionConsumer`` hands this module the first attempt of every action (no retry, no eta): it
skips Celery's task machinery (a request object, signals, a result) on the common path.

- An action whose handler changes nothing (a read, a roll call) is handled at once.
- An action whose handler records joins the open batch. The batch is applied when it holds
  ``NAUTILUS["BATCH_SIZE"]`` actions, or as soon as nothing more waits on the worker's
  connection (RabbitMQ: so an ask alone in the queue is not delayed at all), or at the latest
  ``NAUTILUS["BATCH_WAIT"]`` seconds after its first action came. On Redis, which cannot say what
  waits, an action that comes after a quiet moment is applied at once, and while actions keep
  coming the batch is applied when a look a millisecond later finds none came meanwhile.
- Applying a batch is one transaction: the handlers' changes, then the records of every action
  (``HandledAction``, with its answer and outbox; its trace record) saved together. After the
  one commit, the answers and outboxes are published in the order they came, the broker's
  confirms awaited once for them all (``nautilus_core.confirms``), and the messages
  acknowledged. When an action does not end in a plain answer, that transaction is undone and
  the others are applied again, each in a savepoint of its own.

Any action that does not end in a plain answer goes on to Celery's task after the commit, as
if there were no batch: a refusal (``ActionError``), an action recorded before (a
redelivery), a payload the handler found malformed, or an unexpected failure. Its savepoint
(or transaction) undid all it wrote, so the others are applied, and the task does the rest as
it always has: it records the refusal, answers again from the record, dead-letters, or retries.
A worker that dies before the commit gets every message of the batch again (none was
acknowledged), and one that dies after it answers them again from their records.

``BATCH_SIZE`` 0 sends every action through Celery's task, one transaction each.
"""
import logging
import select
import time

from django.db import IntegrityError, transaction

from . import metrics, observe, tracing
from .conf import nautilus_settings
from .confirms import Confirms

__all__ = ["Batch", "routing_key_of"]

logger = logging.getLogger(__name__)

# seconds between two looks for more messages on a transport that cannot say what waits (Redis); the
# event loop's timers have a resolution of a millisecond
LOOK_AFTER = 0.0005

def routing_key_of(delivery_info, envelope):
    """The action's routing key: the message's, or the envelope's type for a retry or a replay
    (sent to the service's queue directly, where the key is the queue's name)."""
    routing_key = delivery_info.get("routing_key")
    if delivery_info.get("exchange") == "" and isinstance(envelope, dict):
        return envelope.get("action_type") or routing_key
    return routing_key


class _Taken:
    """A message of the batch, with what is known of it so far."""

    __slots__ = ("message", "envelope", "action", "handler", "attempt", "outcome", "outbox")

    def __init__(self, message, envelope, action, handler, attempt):
        self.message, self.envelope, self.action, self.handler = message, envelope, action, handler
        self.attempt, self.outcome, self.outbox = attempt, None, None


class Batch:
    """The open batch of one worker.

    ``hub`` is the worker's event loop (None on a transport without one, such as the embedded
    bus: then each action is applied as it comes); ``to_task(message)`` gives a message to
    Celery's task, the ordinary path.
    """

    def __init__(self, service, hub, to_task):
        self.service, self.hub, self.to_task = service, hub, to_task
        self.confirms = Confirms(service.bus.app)
        self.size = nautilus_settings.BATCH_SIZE
        self.wait = nautilus_settings.BATCH_WAIT
        self.taken = []
        self.timer = None  # applies the batch when no look said so before (see _hold)
        self.last_taken = 0.0
        self.arrived = False  # a message came since the last look (transports that cannot say: _look)

    def take(self, message, envelope, action, handler):
        """A message that passed intake: handle it, or keep it for the batch."""
        attempt = observe.Attempt(self.service, envelope, 1)
        if not handler._nautilus_record:
            return self._handle_now(message, envelope, attempt)
        now = time.monotonic()
        busy = now - self.last_taken < self.wait  # a stream, not an action after a quiet moment
        self.last_taken, self.arrived = now, True
        self.taken.append(_Taken(message, envelope, action, handler, attempt))
        waiting = _more_waiting(message)
        if len(self.taken) >= self.size or self.hub is None or waiting is False or (waiting is None and not busy):
            self.apply()
        elif self.timer is None:
            self._hold(LOOK_AFTER if waiting is None else self.wait)

    def _hold(self, seconds):
        """Apply the batch later: after a look (a transport that cannot say what waits: Redis), or at the
        latest BATCH_WAIT after it opened (RabbitMQ, should what waits on its socket not be a message)."""
        self.arrived = False
        self.timer = self.hub.call_later(seconds, self._look)

    def _look(self):
        """From the event loop: apply the batch, unless messages still came since the last look (and
        the batch is young: BATCH_WAIT at most)."""
        self.timer = None
        if not self.taken:
            return
        if self.arrived and time.monotonic() - self.taken[0].attempt.started < self.wait:
            return self._hold(LOOK_AFTER)
        self.apply()

    def _handle_now(self, message, envelope, attempt):
        """A handler that records nothing (a read): no transaction, no batch."""
        from .exceptions import ActionFailed

        with observe.attempting(attempt):
            try:
                self.service.receive(envelope, reply_to=_reply_to(message), final=False,
                                     routing_key=routing_key_of(message.delivery_info, envelope))
            except ActionFailed:  # the task tries it again, with Celery's retries
                attempt.discard()
                return self.to_task(message)
        message.ack()

    def apply(self):
        """Apply the open batch: one transaction, then publish, acknowledge, and hand on the rest."""
        from .service import _test_hook_exit_after_commit

        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        taken, self.taken = self.taken, []
        applied, handed_on = self._commit(taken)
        if applied:
            metrics.batch_applied(self.service.name, len(applied))
            _test_hook_exit_after_commit()
            applied, handed_on = self._deliver(applied, handed_on)
        for item in handed_on:
            item.attempt.discard()
            self.to_task(item.message)

    def _deliver(self, applied, handed_on):
        """Publish what the committed actions answer and emit, then acknowledge them; return
        ``(applied, handed on)``: when the bus refuses, the task answers each again from its record."""
        try:
            with self.confirms.round() as producer:  # one wait for the broker's confirms of them all
                for item in applied:
                    with observe.attempting(item.attempt):
                        self.service.deliver(item.outcome, item.outbox, _reply_to(item.message), producer=producer)
        except Exception:
            logger.warning("%s could not publish the answers of a batch of %d; the task tries again",
                           self.service.name, len(applied), exc_info=True)
            return [], handed_on + applied
        for item in applied:
            item.message.ack()
        return applied, handed_on

    def _commit(self, taken):
        """Commit what can be applied of ``taken``; return ``(applied, handed on)``.

        First at full speed: no savepoint, the records saved together, no look-up of earlier records
        (a redelivery is rare: the unique record says so). When an action fails, that transaction is
        undone, the action handed on, and the others applied again each in a savepoint of its own
        (two tries at most, however many fail).
        """
        try:
            try:
                with transaction.atomic():
                    return self._apply_together(taken), []
            except (_HandOn, _Recorded) as failed:  # each on its own, the one that failed (if known) aside
                applied, handed_on = [], []
                with transaction.atomic():
                    for item in taken:
                        # a copy of an action handed on goes after it: the task's answer to the first is the copy's
                        if (item is not getattr(failed, "item", None)
                                and item.action.action_id not in {h.action.action_id for h in handed_on}
                                and self._apply_alone(item)):
                            applied.append(item)
                        else:
                            handed_on.append(item)
                return applied, handed_on
        except Exception:  # the database failed the batch (an outage, a record it refused): each goes on alone
            logger.warning("%s could not commit a batch of %d actions; each goes to the task", self.service.name,
                           len(taken), exc_info=True)
            return [], taken

    def _apply_together(self, taken):
        """Every action of ``taken`` in the current transaction, without savepoints; raises _HandOn
        for the first that does not end in a plain answer (the transaction is then unusable)."""
        from .models import HandledAction, TracedAction

        handled, traced, seen = [], [], set()
        for item in taken:
            if item.action.action_id in seen:  # a copy: the task answers it from the record
                raise _HandOn(item)
            seen.add(item.action.action_id)
            with tracing.handling(self.service, item.envelope, attempt=1, final=False) as state:
                try:
                    item.outcome, item.outbox = self.service.run_handler(item.handler, item.action)
                except Exception as exc:
                    state.recorded = True  # nothing of this try is kept: the task's attempt is the one recorded
                    raise _HandOn(item) from exc
                handled.append(HandledAction.of(self.service.name, item.action, item.outcome, item.outbox))
                traced.append(tracing.record_of(item.outcome, item.outbox))
        try:
            HandledAction.objects.bulk_create(handled)
        except IntegrityError as exc:  # one was recorded before (a redelivery): rare, so not looked up first
            raise _Recorded() from exc
        TracedAction.objects.bulk_create([row for row in traced if row is not None])
        tracing.save_kept()  # the records of the reads answered meanwhile, in the same commit
        return taken

    def _apply_alone(self, item):
        """Apply one action in a savepoint; False when it goes on to the task (its savepoint undone)."""
        with tracing.handling(self.service, item.envelope, attempt=1, final=False) as state:
            try:
                with transaction.atomic():
                    item.outcome, item.outbox = self.service.apply(item.handler, item.action)
                return True
            except Exception as exc:  # a refusal, a redelivery, a bug: all the task's to handle
                logger.debug("%s hands %s to the task: %r", self.service.name, item.action.action_id, exc)
                state.recorded = True  # nothing of this try is kept: the task's attempt is the one recorded
                return False


class _Recorded(Exception):
    """An action of a batch was recorded before: which one, the savepoints of ``_apply_alone`` find out."""


class _HandOn(Exception):
    """An action of a batch that goes on to the task."""

    def __init__(self, item):
        super().__init__(item.action.action_id)
        self.item = item


def _more_waiting(message):
    """Whether more has come on the message's connection than the worker has read (RabbitMQ: its socket
    is readable); None when the transport cannot say (Redis takes one message a round trip)."""
    try:
        sock = message.channel.connection.transport.sock
    except AttributeError:
        return None
    pending = getattr(sock, "pending", None)  # TLS: decrypted bytes not read yet
    if pending is not None and pending():
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed meanwhile: nothing more on it
        return False


def _reply_to(message):
    return (message.properties or {}).get("reply_to") or None
