"""An in-memory bus for fast tests of a service's handlers, with faults on demand.

It is the real bus minus the broker's process: the service publishes through its own
``Bus`` (Celery's task messages, JSON), on kombu's in-memory transport (the topic exchange
and the service's queue bound as on RabbitMQ), and each delivery runs ``Service.receive``
on the decoded message body and is acknowledged afterwards, as the worker does. Nothing
runs in the background: ``deliver()`` hands out what is queued, in the test's thread, so
handlers see the test's database (and its transaction)::

    bus = MemoryBus(RecipeService())
    reply = bus.ask("create.recipe.pending", {"name": "soup"})     # publish, deliver, the reply
    assert reply.action_type == "create.recipe.success"
    assert bus.of_type("create.recipe.success")                    # what was broadcast

Faults apply to the next deliveries whose action type matches a topic pattern
(``create.*.pending``, ``#``), each ``times`` times:

- ``duplicate``: handled, then not acknowledged: the broker delivers it again (as after a
  lost ack or a worker killed after its commit), flagged ``redelivered``;
- ``drop``: acknowledged without being handled (a message lost on the way);
- ``delay``: held unacknowledged until ``deliveries`` other deliveries were handled;
- ``reorder``: what is queued is delivered in a shuffled order (``random.Random(seed)``).

A handler that fails unexpectedly is not acknowledged and is delivered again, up to
``NAUTILUS["MAX_RETRIES"]`` times, then dead-lettered (``dead_letters``), as in the worker.
"""
import json
import random
import uuid
from dataclasses import dataclass

from celery import Celery
from kombu import Queue, binding
from kombu.transport import memory
from kombu.transport.virtual.exchange import TopicExchange

from nautilus_core.actions import Action
from nautilus_core.bus import Bus, actions_exchange, envelope_of_task_message
from nautilus_core.conf import nautilus_settings

__all__ = ["MemoryBus", "NoReply"]


class NoReply(AssertionError):
    """``MemoryBus.ask``: nothing answered once every queued action was delivered."""


@dataclass
class _Fault:
    kind: str
    pattern: str
    times: int
    deliveries: int = 0  # delay: how many other deliveries come first
    seed: int = 0

    def matches(self, action_type):
        return self.times > 0 and _topic(self.pattern).match(action_type or "") is not None


def _topic(pattern):
    import re

    return re.compile(TopicExchange(None).key_to_pattern(pattern))


class MemoryBus:
    """Services on kombu's in-memory transport; ``deliver()`` runs what is queued."""

    def __init__(self, *services, sender="test"):
        _reset_memory_transport()  # its state is global to the process: start from nothing
        self.app = Celery("nautilus.memory", broker="memory://", set_as_current=False)
        self.app.conf.update(task_serializer="json", accept_content=["json"])
        self.connection = self.app.connection_for_write()
        self.channel = self.connection.channel()
        self.exchange = actions_exchange(nautilus_settings.EXCHANGE)
        self.client = self._bus(sender)
        self.services = []
        self.faults = []
        self._attempts = {}      # message id → deliveries so far
        self._held = []          # delayed deliveries: [deliveries to wait, service, message]
        self._recorder = self._declare(Queue(f"nautilus.test-recorder.{uuid.uuid4().hex}", exchange=self.exchange,
                                             bindings=[binding(self.exchange, routing_key="#")], durable=False))
        self._dead = self._declare(Queue(nautilus_settings.DEAD_LETTER_QUEUE, durable=True))
        self._published, self._dead_letters = [], []
        for service in services:
            self.attach(service)

    def _bus(self, sender):
        return Bus(self.app, sender=sender, exchange=nautilus_settings.EXCHANGE,
                   dead_letter_queue=nautilus_settings.DEAD_LETTER_QUEUE)

    def _declare(self, queue):
        bound = queue(self.channel)
        bound.declare()
        return bound

    def attach(self, service):
        """Put ``service`` on this bus: its queue, bound to what it handles; its publishing. Returns it."""
        service._bus = self._bus(service.name)
        self.services.append((service, self._declare(service.queue())))
        return service

    # -- faults ----------------------------------------------------------------------

    def duplicate(self, pattern="#", times=1):
        """The next ``times`` matching deliveries are handled, then delivered once more."""
        return self._fault("duplicate", pattern, times)

    def drop(self, pattern="#", times=1):
        """The next ``times`` matching deliveries are lost (acknowledged, never handled)."""
        return self._fault("drop", pattern, times)

    def delay(self, pattern="#", times=1, deliveries=1):
        """The next ``times`` matching deliveries wait until ``deliveries`` others were handled."""
        return self._fault("delay", pattern, times, deliveries=deliveries)

    def reorder(self, seed=0, times=1):
        """The next ``times`` calls of ``deliver`` hand out what is queued in a shuffled order."""
        return self._fault("reorder", "#", times, seed=seed)

    def _fault(self, kind, pattern, times, **options):
        fault = _Fault(kind, pattern, times, **options)
        self.faults.append(fault)
        return fault

    def _take_fault(self, kind, action_type):
        for fault in self.faults:
            if fault.kind == kind and fault.matches(action_type):
                fault.times -= 1
                return fault
        return None

    # -- sending ---------------------------------------------------------------------

    def publish(self, action_type, payload=None, *, reply_to=None):
        """Publish an action on the exchange (not delivered until ``deliver``); return it."""
        return self.client.publish(action_type, payload, reply_to=reply_to)

    def ask(self, action_type, payload=None):
        """Publish with a reply queue, deliver everything, return the first reply (NoReply if none)."""
        replies = self._declare(Queue(f"nautilus.reply.{uuid.uuid4().hex}", durable=False))
        action = Action(action_type=action_type, payload=payload if payload is not None else {},
                        correlation_id=str(uuid.uuid4()), sender=self.client.sender)
        self.client.publish(action, reply_to=replies.name)
        self.deliver()
        message = replies.get(no_ack=True)
        if message is None:
            raise NoReply(f"nobody answered {action_type} (published: {[e['action_type'] for e in self.published]})")
        return Action.from_dict(json.loads(message.body))

    # -- delivering ------------------------------------------------------------------

    def deliver(self, limit=10_000):
        """Deliver until every queue is empty and nothing is held; return the number of deliveries."""
        count = 0
        while count < limit:
            reorder = self._take_fault("reorder", "#")
            batch = self._take_all(reorder.seed) if reorder else self._take_one()
            if batch is None:
                if not self._held:
                    return count
                batch = [self._held.pop(0)[1:]]  # nothing else to wait for
            for service, message in batch:
                count += self._deliver(service, message)
        raise RuntimeError(f"still delivering after {limit} deliveries: is a handler publishing what it handles?")

    def _take_one(self):
        for service, queue in self.services:
            message = queue.get(no_ack=False)
            if message is not None:
                return [(service, message)]
        return None

    def _take_all(self, seed):
        batch = [(service, message) for service, queue in self.services
                 for message in iter(lambda q=queue: q.get(no_ack=False), None)]
        if not batch:
            return None
        random.Random(seed).shuffle(batch)
        return batch

    def _deliver(self, service, message):
        envelope = envelope_of_task_message(message.decode())
        action_type = envelope.get("action_type") if isinstance(envelope, dict) else None
        if self._take_fault("drop", action_type):
            message.ack()
            return 0
        fault = self._take_fault("delay", action_type)
        if fault is not None:
            self._held.append([fault.deliveries, service, message])
            return 0
        key = message.headers.get("id") or message.delivery_tag
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        message.delivery_info["redelivered"] = attempt > 1
        from nautilus_core.service import ActionFailed

        try:
            service.receive(envelope, reply_to=message.properties.get("reply_to"),
                            routing_key=message.delivery_info.get("routing_key"),
                            final=attempt > nautilus_settings.MAX_RETRIES, attempt=attempt)
        except ActionFailed:
            message.requeue()  # not acknowledged: the broker gives it again
        else:
            if self._take_fault("duplicate", action_type):
                message.requeue()  # handled, but the ack was lost
            else:
                message.ack()
        return 1 + self._release_held()

    def _release_held(self):
        """Count one delivery for each held message; deliver those whose wait is over."""
        released = 0
        for held in list(self._held):
            held[0] -= 1
            if held[0] <= 0:
                self._held.remove(held)
                released += self._deliver(held[1], held[2])
        return released

    # -- what happened ---------------------------------------------------------------

    @property
    def published(self):
        """Every envelope published on the exchange so far (by the services and by the test), in order."""
        while (message := self._recorder.get(no_ack=True)) is not None:
            self._published.append(envelope_of_task_message(message.decode()))
        return list(self._published)

    def of_type(self, action_type):
        return [e for e in self.published if e.get("action_type") == action_type]

    @property
    def dead_letters(self):
        """The dead-letter records (``reason``, ``body``…) so far."""
        while (message := self._dead.get(no_ack=True)) is not None:
            self._dead_letters.append(json.loads(message.body))
        return list(self._dead_letters)

    def close(self):
        for service, _ in self.services:
            service._bus = None
        self.channel.close()
        self.connection.release()
        _reset_memory_transport()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reset_memory_transport():
    memory.Transport.global_state.clear()
    memory.Channel.queues.clear()
    memory.Channel.events.clear()
