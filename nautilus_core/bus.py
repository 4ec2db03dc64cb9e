"""The action bus: topology, publishing, replies, asks and the dead-letter queue.

Every action is published on one durable topic exchange (``nautilus.actions``) with
its action type as routing key, as a Celery task message ``nautilus.action(envelope)``
so that Celery workers consume it. Each service has one durable queue,
``nautilus.<service>``, bound to the action types it handles; replicas of a service
compete on that queue, so scaling out never applies an action twice.

An *ask* is a publish that carries a correlation id and a ``reply_to`` queue; the
handler answers there with the outcome envelope. Each asking process owns one
private reply queue, consumed by a background thread, so asks from many threads
(or an asyncio loop) share it. The reply queue outlives a lost connection (it expires
a minute after its last consumer left), so replies sent while the asker reconnects wait.

An ask carries a deadline (its timeout from now) in its envelope and as the message's TTL;
the asker waits ``grace`` seconds past it for a late answer, then gives up (AskTimeout).
A service refuses an action past its deadline, so an asker that gave up can retry. An ask
nobody can receive fails at once (NoHandler): on RabbitMQ it is published ``mandatory``
on the reply listener's connection, whose thread sees the broker return it; on the embedded
bus and Redis the exchange's bindings are read first (``ROUTE_CHECKS``); elsewhere it times out.

A dead letter (``nautilus.dead``) is a JSON record with the layer at fault and the reason
(``nautilus_core.intake`` decides), and what it takes to send the message again
(``Bus.replay``): the body, the routing key, the queue of the service that gave up on it, the
reply queue and, for a raw message, its headers. On RabbitMQ the dead-letter queue is bounded
(``dead_letter_queue``), and a service queue may be a quorum queue (``service_queue``).
"""
import asyncio
import dataclasses
import base64
import json
import logging
import socket
import threading
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone

from amqp.exceptions import AMQPError, PreconditionFailed
from kombu import Consumer, Exchange, Producer, Queue, binding
from kombu.exceptions import OperationalError

from . import observe, otel
from .actions import Action, deadline_in, seconds_left
from .exceptions import AskTimeout, NoHandler
from .versions import routing_key

__all__ = ["TASK_NAME", "QUEUE_TYPES", "Bus", "AskTimeout", "NoHandler", "BrokerUnreachable", "reach_broker",
           "connect", "service_queue", "dead_letter_queue", "declare", "direct_queue", "envelope_of_task_message",
           "ROUTE_CHECKS"]

logger = logging.getLogger(__name__)

TASK_NAME = "nautilus.action"
QUEUE_TYPES = ("classic", "quorum")

# Seconds a reply waits for its asker: the reply queue expires this long after its asker left,
# and a reply is dropped this long after it was sent (on Redis that is what removes the replies
# to an asker that is gone: see nautilus_core/redis_transport.py).
REPLY_TTL = 60


class BrokerUnreachable(ConnectionError):
    """The broker refused the connection, the virtual host or the credentials: one line says which and why."""


def reach_broker(connection, timeout=8.0):
    """Connect once to a kombu Connection's broker (a couple of quick tries, at most ``timeout`` s).

    Raises BrokerUnreachable naming the broker's URL (its password hidden) and the reason, so a
    command stops at once instead of retrying a wrong password or virtual host for minutes.
    """
    try:
        with connection.clone(connect_timeout=min(timeout, 4.0)) as probe:
            probe.ensure_connection(max_retries=1, interval_start=0.5, timeout=timeout)
    except Exception as exc:  # refused, unknown host, wrong vhost or credentials: all stop the command
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BrokerUnreachable(f"cannot use the broker at {connection.as_uri()}: {reason}") from None


def _bound_in_table(channel, exchange, routing_key):
    """Embedded bus and Redis (kombu's virtual transports): whether the exchange's binding table
    (a shared file; a Redis set) routes ``routing_key``."""
    return bool(channel.exchange_types["topic"].lookup(channel.get_table(exchange), exchange, routing_key, None))


# Per kombu transport (``driver_type``): ``check(channel, exchange name, routing key)`` → whether some
# queue is bound to the key. RabbitMQ needs none (its asks are mandatory and returned when unroutable);
# a transport without a check lets an unroutable ask time out.
ROUTE_CHECKS = {"filesystem": _bound_in_table, "redis": _bound_in_table}


def actions_exchange(name):
    return Exchange(name, type="topic", durable=True)


def service_queue(service_name, action_types, exchange_name, *, queue_type="classic", delivery_limit=0,
                  dead_letter_queue="nautilus.dead"):
    """The durable queue of one service, bound to every action type it handles.

    A ``quorum`` queue (RabbitMQ's replicated queue) counts the deliveries of each message: one
    delivered ``delivery_limit`` times more without being acknowledged (it kills the worker
    every time) goes to ``dead_letter_queue``, and is not delivered again.
    """
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"unknown queue type {queue_type!r}; expected one of {QUEUE_TYPES}")
    arguments = None
    if queue_type == "quorum":
        arguments = {"x-queue-type": "quorum", "x-dead-letter-exchange": "",
                     "x-dead-letter-routing-key": dead_letter_queue}
        if delivery_limit:
            arguments["x-delivery-limit"] = int(delivery_limit)
    exchange = actions_exchange(exchange_name)
    return Queue(
        f"nautilus.{service_name}",
        exchange=exchange,
        bindings=[binding(exchange, routing_key=key) for key in sorted(action_types)],
        durable=True,
        queue_arguments=arguments,
    )


def dead_letter_queue(name, *, max_length=0, max_age=0):
    """The durable dead-letter queue, bounded on RabbitMQ: at most ``max_length`` letters (the oldest
    are dropped first) kept at most ``max_age`` seconds (0: no bound). A classic queue always: a
    quorum queue would count every ``dead list`` as a delivery and drop letters at its limit."""
    arguments = {}
    if max_length:
        arguments["x-max-length"] = int(max_length)
    if max_age:
        arguments["x-message-ttl"] = int(max_age * 1000)
    return Queue(name, durable=True, queue_arguments=arguments or None)


def declare(connection, queue):
    """Declare ``queue`` and its bindings on ``connection``; return it.

    RabbitMQ refuses to declare a queue that exists with other arguments (406
    PRECONDITION_FAILED: a bound added to the dead-letter queue, classic switched to quorum).
    Rather than stop, the queue is used as it is, its bindings declared, with a warning; from
    then on kombu and Celery do not declare it again (``no_declare``).
    """
    if not queue.no_declare:
        try:
            with connection.channel() as channel:  # a channel of its own: the refusal closes it
                queue(channel).declare()
            return queue
        except PreconditionFailed as exc:
            logger.warning("the queue %s exists with other arguments than %s (%s): it is used as it is. "
                           "To change it, drain it and delete it (rabbitmqctl delete_queue %s), then restart.",
                           queue.name, queue.queue_arguments, exc, queue.name)
            queue.no_declare = True
            # It may be a quorum queue, whatever the settings say, and RabbitMQ refuses global QoS on
            # one: marked so, Celery consumes it with per-consumer QoS, which every queue type accepts.
            queue.queue_arguments = {"x-queue-type": "quorum"}
    with connection.channel() as channel:
        bound = queue(channel)
        bound.queue_declare(passive=True)
        for each in queue.bindings:
            each.declare(channel)
            each.bind(bound, channel=channel)
    return queue


def direct_queue(name):
    """A queue addressed through the default exchange: a message sent there reaches that queue only.

    Retries and replays go this way, so other services bound to the action type do not get
    it a second time (the topic exchange would broadcast it again).
    """
    return Queue(name, exchange=Exchange(""), routing_key=name, no_declare=True)


def envelope_of_task_message(body):
    """The envelope inside a decoded ``nautilus.action`` task message body."""
    args = body[0] if isinstance(body, (list, tuple)) and body else None
    return args[0] if isinstance(args, (list, tuple)) and len(args) == 1 else None


class Bus:
    """One process's connection to the action bus, on a Celery app's broker.

    ``sender`` is the service name written into the envelopes this bus sends.
    """

    def __init__(self, app, *, sender, exchange="nautilus.actions", dead_letter_queue="nautilus.dead", grace=0.5):
        self.app = app
        self.sender = sender
        self.grace = grace  # seconds an asker waits past a deadline (see NAUTILUS_DEADLINE_GRACE)
        self.exchange = actions_exchange(exchange)
        self.dead_letter_queue = (dead_letter_queue if isinstance(dead_letter_queue, Queue)
                                  else Queue(dead_letter_queue, durable=True))
        self._dead_letter_queue_declared = False
        self._replies = None
        self._replies_lock = threading.Lock()

    @classmethod
    def from_settings(cls, app, *, sender):
        """The bus of a process with Django settings: exchange and dead-letter queue from ``NAUTILUS``."""
        from .conf import nautilus_settings as s

        return cls(app, sender=sender, exchange=s.EXCHANGE, grace=s.DEADLINE_GRACE, dead_letter_queue=dead_letter_queue(
            s.DEAD_LETTER_QUEUE, max_length=s.DEAD_LETTER_MAX_LENGTH, max_age=s.DEAD_LETTER_MAX_AGE))

    # -- sending ---------------------------------------------------------------------

    def publish(self, action_type_or_action, payload=None, *, correlation_id=None, reply_to=None, deadline=None,
                producer=None):
        """Publish an action on the exchange; return the Action that was sent.

        ``deadline`` (ISO-8601) is written into the envelope of a new action; an action with a
        deadline is also published with the time left as its TTL (RabbitMQ drops it unread after).
        ``producer``: publish with it (a round of ``nautilus_core.confirms``), not one of the pool's.
        """
        action = self._action(action_type_or_action, payload, correlation_id, deadline)
        with self.app.producer_or_acquire(producer) as producer:
            self._send(action, producer, reply_to=reply_to, declare=[self.exchange])
        return action

    def _send(self, action, producer, **options):
        if action.deadline is not None:
            options["expiration"] = max(0.001, seconds_left(action.deadline))  # not 0: RabbitMQ reads "none"
        self.app.send_task(
            TASK_NAME,
            args=[action.to_dict()],
            task_id=action.action_id,
            exchange=self.exchange,
            routing_key=routing_key(action.action_type, action.api_major),  # a major ≥ 2 has keys of its own
            producer=producer,
            ignore_result=True,
            # what worker logs show of the call; also spares Celery a saferepr of every payload
            argsrepr=action.action_type,
            kwargsrepr="{}",
            **options,
        )

    def reply(self, reply_to, action, producer=None):
        """Send an outcome envelope straight to an asker's reply queue."""
        with self.app.producer_or_acquire(producer) as producer:
            producer.publish(
                json.dumps(action.to_dict()),
                exchange="",
                routing_key=reply_to,
                correlation_id=action.correlation_id,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=1,
                expiration=REPLY_TTL,
                retry=True,
            )

    def dead_letter(self, body, reason, *, layer, **context):
        """Keep a message nobody can handle in ``nautilus.dead``, with the layer at fault and the reason.

        ``context`` adds fields to the record: ``service``, ``routing_key``, ``queue``,
        ``reply_to``, ``attempts``, ``kind`` (``"action"``: ``body`` is the task's argument;
        ``"message"``: ``body`` is the raw message, with ``headers`` and ``content_type``;
        ``"call"``, in letters of earlier versions: ``{"args", "kwargs"}`` of a task call).
        """
        extra = {}
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:  # keep the exact bytes for a faithful replay
                extra["body_base64"] = base64.b64encode(body).decode("ascii")
                body = body.decode("utf-8", errors="replace")
        record = {
            "layer": layer,
            "reason": reason,
            "body": body,
            "dead_at": datetime.now(timezone.utc).isoformat(),
            **extra,
            **context,
        }
        logger.warning("dead-lettered a message (%s): %s", layer, reason)
        with self.app.producer_or_acquire() as producer:
            if not self._dead_letter_queue_declared:
                declare(producer.connection, self.dead_letter_queue)
                self._dead_letter_queue_declared = True
            producer.publish(
                json.dumps(record, default=str),
                exchange="",
                routing_key=self.dead_letter_queue.name,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                retry=True,
            )
        observe.dead_lettered(context.get("service") or self.sender, layer, body, context.get("routing_key"))

    def replay(self, record, *, broadcast=False):
        """Send a dead letter again: to the queue of the service that gave up on it, or with
        ``broadcast`` (or when the record names no queue) on the exchange under its routing key."""
        body = record.get("body")
        queue = None if broadcast else record.get("queue")
        routing_key = record.get("routing_key")
        if not routing_key and isinstance(body, dict):
            routing_key = body.get("action_type")
        if not queue and not routing_key:
            raise ValueError("the dead letter names neither a queue nor a routing key")
        where = {"exchange": "", "routing_key": queue} if queue else {"exchange": self.exchange,
                                                                      "routing_key": routing_key}
        with self.app.producer_or_acquire() as producer:
            if record.get("kind", "message" if isinstance(body, str) else "action") == "message":
                raw = base64.b64decode(record["body_base64"]) if "body_base64" in record else body
                producer.publish(
                    raw, **where, headers=record.get("headers") or {}, retry=True, delivery_mode=2,
                    content_type=record.get("content_type") or "application/json",
                    content_encoding=record.get("content_encoding") or "utf-8",
                    reply_to=record.get("reply_to"), correlation_id=record.get("correlation_id"),
                )
            else:
                action_id = body.get("action_id") if isinstance(body, dict) else None
                call = body if record.get("kind") == "call" else {"args": [body], "kwargs": {}}
                self.app.send_task(
                    TASK_NAME, args=call["args"], kwargs=call["kwargs"],
                    task_id=action_id if isinstance(action_id, str) else None,
                    reply_to=record.get("reply_to"), producer=producer, ignore_result=True,
                    **({"queue": direct_queue(queue)} if queue else {**where, "declare": [self.exchange]}),
                )

    # -- asking ----------------------------------------------------------------------

    @observe.timed_ask
    def ask(self, action_type, payload=None, *, timeout, action_id=None, major=None):
        """Publish an action that must be applied within ``timeout`` seconds and wait for its outcome.

        Returns the reply Action. Raises NoHandler when no service handles the type, AskTimeout
        when no answer came by the deadline (plus ``grace``): the action is then not applied.
        ``major``: the API major whose replicas must answer (``nautilus_core.versions``; default 1).
        """
        with otel.span(f"{action_type} ask", otel.CLIENT):
            return self._wait(*self._send_ask(action_type, payload, timeout, action_id, major), timeout)

    def _wait(self, future, action, timeout):
        try:
            return future.result(timeout + self.grace)
        except FutureTimeout:
            raise AskTimeout(action.action_type, timeout, self._replies.connections == future.connections) from None
        finally:
            self._replies.forget(action.correlation_id)

    @observe.timed_ask
    async def ask_async(self, action_type, payload=None, *, timeout, action_id=None, major=None):
        """``ask`` for an asyncio caller; many asks can wait at once."""
        with otel.span(f"{action_type} ask", otel.CLIENT):
            return await self._wait_async(*self._send_ask(action_type, payload, timeout, action_id, major), timeout)

    async def _wait_async(self, future, action, timeout):
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout + self.grace)
        except asyncio.TimeoutError:
            raise AskTimeout(action.action_type, timeout, self._replies.connections == future.connections) from None
        finally:
            self._replies.forget(action.correlation_id)

    def _send_ask(self, action_type, payload, timeout=None, action_id=None, major=None):
        """Publish an ask (with a deadline ``timeout`` seconds away, if given); return ``(future, action)``.

        ``action_id`` (default: a new one) names the action: an ask sent again under the same id is
        answered from the service's record, never applied twice.
        """
        replies = self._reply_listener()
        action = self._action(action_type, payload, str(uuid.uuid4()),
                              deadline_in(timeout) if timeout is not None else None)
        if action_id is not None:
            action = dataclasses.replace(action, action_id=action_id)
        if major not in (None, 1):
            action = dataclasses.replace(action, api_major=major)
        future = replies.expect(action.correlation_id)
        future.connections = replies.connections  # its answer may be lost if this changes before it arrives
        try:
            if replies.amqp:  # mandatory, returned to the listener when unroutable
                self._send_on(replies.producer, action, reply_to=replies.queue.name)
            else:
                with self.app.producer_or_acquire() as producer:
                    self._check_route(producer.channel, routing_key(action.action_type, action.api_major))
                    self._send(action, producer, reply_to=replies.queue.name, declare=[self.exchange])
        except BaseException:
            replies.forget(action.correlation_id)
            raise
        return future, action

    def _send_on(self, producer, action, **options):
        """Publish an ask on the reply listener's connection; a lost connection fails it at once
        (the listener reconnects; waiting here would hold the asker past its deadline)."""
        if producer is None:
            raise ConnectionError("the connection to the broker is lost (reconnecting)")
        try:
            # declared by the listener: a declare here would read its connection from this thread;
            # one publisher at a time: py-amqp writes a message as several frames
            with self._replies.publishing:
                self._send(action, producer, mandatory=True, retry=False, declare=[], **options)
        except (OSError, AttributeError, OperationalError, AMQPError) as exc:  # a closed channel or socket
            raise ConnectionError(f"the connection to the broker is lost: {exc}") from exc

    def _check_route(self, channel, routing_key):
        check = ROUTE_CHECKS.get(channel.connection.client.transport.driver_type)
        if check is not None and not check(channel, self.exchange.name, routing_key):
            raise NoHandler(routing_key)

    def _reply_listener(self):
        with self._replies_lock:
            if self._replies is None:
                self._replies = _ReplyListener(self.app, self.exchange)
                self._replies.start()
            return self._replies

    def close(self):
        if self._replies is not None:
            self._replies.stop()
            self._replies = None

    def _action(self, action_type_or_action, payload, correlation_id, deadline=None):
        if isinstance(action_type_or_action, Action):
            return action_type_or_action
        return Action(
            action_type=action_type_or_action,
            payload=payload if payload is not None else {},
            correlation_id=correlation_id,
            sender=self.sender,
            deadline=deadline,
        )


def connect(broker_url, *, sender, transport_options=None, **kwargs):
    """A Bus on its own Celery app, for processes that run no service (tests, benchmarks).

    The transport is nautilus's for the URL's broker (``nautilus_core.brokers``);
    ``transport_options`` add to its options.
    """
    from celery import Celery

    from .brokers import connection_options

    options = connection_options(broker_url)
    app = Celery("nautilus.bus", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], broker_transport=options["transport"],
                    broker_transport_options={**options["transport_options"], **(transport_options or {})},
                    broker_use_ssl=options["ssl"])
    return Bus(app, sender=sender, **kwargs)


class _ReplyListener(threading.Thread):
    """Consumes this process's private reply queue and completes waiting asks.

    On RabbitMQ it also offers ``producer``, on a channel of its own connection, for asks:
    published ``mandatory``, an ask no queue is bound to comes back (basic.return) to this
    thread, which is reading that connection anyway, and fails at once with NoHandler. Only
    this thread reads the connection: the producer publishes without confirms and declares
    nothing (py-amqp serializes the frames written from many threads).
    """

    def __init__(self, app, exchange):
        super().__init__(name="nautilus-replies", daemon=True)
        self.app = app
        self.exchange = exchange
        self.amqp = False  # RabbitMQ: asks are published on this connection (``producer``)
        self.producer = None  # RabbitMQ, while connected: where asks are published
        self.connections = 0  # counts connections made and lost: an answer may be lost with a lost one
        # Not auto-delete: it must outlive a lost connection; the broker drops it a minute after
        # its last consumer left.
        self.queue = Queue(
            f"nautilus.reply.{uuid.uuid4().hex}", durable=False, auto_delete=False,
            queue_arguments={"x-expires": REPLY_TTL * 1000},
        )
        self.unexpected = 0  # replies nobody waited for: duplicates after a redelivery, or too late
        self._pending = {}
        self._lock = threading.Lock()
        self.publishing = threading.Lock()  # held while an asking thread publishes on ``producer``
        self._stopping = threading.Event()
        self._ready = threading.Event()

    def expect(self, correlation_id):
        future = Future()
        with self._lock:
            self._pending[correlation_id] = future
        return future

    def forget(self, correlation_id):
        with self._lock:
            self._pending.pop(correlation_id, None)

    def start(self):
        super().start()
        # The queue must exist before the first ask is published, or its reply is lost.
        if not self._ready.wait(30):
            raise ConnectionError("could not declare the reply queue on the broker")

    def stop(self):
        self._stopping.set()
        self.join(5)

    def run(self):
        while not self._stopping.is_set():
            try:
                # no publisher confirms here: waiting for one would read the connection from an asking thread
                with self.app.connection_for_read(transport_options={"confirm_publish": False}) as connection:
                    self._consume(connection)
            except Exception as exc:  # the broker went away: reconnect, keep the same queue name
                if self._stopping.is_set():
                    break
                logger.warning("reply listener lost its connection (%s); reconnecting", exc)
                self._stopping.wait(1)

    def _consume(self, connection):
        connection.ensure_connection(max_retries=None)
        channel = connection.channel()
        consumer = Consumer(channel, queues=[self.queue], callbacks=[self._on_reply],
                            accept=["json"], no_ack=True)
        with consumer:
            self.amqp = connection.transport.driver_type == "amqp"
            if self.amqp:
                # Before each publish py-amqp reads the connection for a connection.blocked notice (with
                # drain_events, from the publishing thread): two threads reading one socket tear frames
                # apart and hang. Only this thread reads; the notice still reaches it here.
                connection.connection.client_properties.get("capabilities", {})["connection.blocked"] = False
                producer = Producer(connection.channel(), on_return=self._on_return)
                self.exchange(producer.channel).declare()
                self.producer = producer
            self.connections += 1
            self._ready.set()
            try:
                while not self._stopping.is_set():
                    try:
                        connection.drain_events(timeout=0.5)
                    except socket.timeout:
                        continue
            finally:
                self.producer = None
                self.connections += 1  # lost (or stopping): asks waiting now may never hear their answer

    def _on_return(self, exc, exchange, routing_key, message):
        """The broker returned an ask no queue is bound to: fail it at once."""
        try:
            envelope = envelope_of_task_message(json.loads(message.body))
            correlation_id = envelope.get("correlation_id") if isinstance(envelope, dict) else None
        except ValueError:
            return
        with self._lock:
            future = self._pending.pop(correlation_id, None)
        if future is not None and not future.done():
            future.set_exception(NoHandler(routing_key))

    def _on_reply(self, body, message):
        try:
            reply = Action.from_dict(body)
        except ValueError:
            logger.warning("ignored a malformed reply: %r", body)
            return
        with self._lock:
            future = self._pending.pop(reply.correlation_id, None)
            if future is None:
                self.unexpected += 1
        if future is not None and not future.done():
            future.set_result(reply)
