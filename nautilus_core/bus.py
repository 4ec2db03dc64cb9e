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

A dead letter (``nautilus.dead``) is a JSON record with the reason and what it takes to
send the message again (``Bus.replay``): the body, the routing key, the queue of the
service that gave up on it, the reply queue and, for a raw message, its headers.
"""
import asyncio
import base64
import json
import logging
import socket
import threading
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone

from kombu import Consumer, Exchange, Queue, binding

from .actions import Action

__all__ = ["TASK_NAME", "Bus", "AskTimeout", "connect", "service_queue", "direct_queue", "envelope_of_task_message"]

logger = logging.getLogger(__name__)

TASK_NAME = "nautilus.action"

# Seconds a reply waits for its asker: the reply queue expires this long after its asker left,
# and a reply is dropped this long after it was sent (on Redis that is what removes the replies
# to an asker that is gone: see nautilus_core/redis_transport.py).
REPLY_TTL = 60


class AskTimeout(TimeoutError):
    """Nobody answered an ask in time."""

    def __init__(self, action_type, timeout):
        super().__init__(
            f"No reply to {action_type} within {timeout:g}s: is a service that handles it running?"
        )
        self.action_type = action_type
        self.timeout = timeout


def actions_exchange(name):
    return Exchange(name, type="topic", durable=True)


def service_queue(service_name, action_types, exchange_name):
    """The durable queue of one service, bound to every action type it handles."""
    exchange = actions_exchange(exchange_name)
    return Queue(
        f"nautilus.{service_name}",
        exchange=exchange,
        bindings=[binding(exchange, routing_key=key) for key in sorted(action_types)],
        durable=True,
    )


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

    def __init__(self, app, *, sender, exchange="nautilus.actions", dead_letter_queue="nautilus.dead"):
        self.app = app
        self.sender = sender
        self.exchange = actions_exchange(exchange)
        self.dead_letter_queue = Queue(dead_letter_queue, durable=True)
        self._replies = None
        self._replies_lock = threading.Lock()

    # -- sending ---------------------------------------------------------------------

    def publish(self, action_type_or_action, payload=None, *, correlation_id=None, reply_to=None):
        """Publish an action on the exchange; return the Action that was sent."""
        action = self._action(action_type_or_action, payload, correlation_id)
        with self.app.producer_or_acquire() as producer:
            self.app.send_task(
                TASK_NAME,
                args=[action.to_dict()],
                task_id=action.action_id,
                exchange=self.exchange,
                routing_key=action.action_type,
                declare=[self.exchange],
                reply_to=reply_to,
                producer=producer,
                ignore_result=True,
                # what worker logs show of the call; also spares Celery a saferepr of every payload
                argsrepr=action.action_type,
                kwargsrepr="{}",
            )
        return action

    def reply(self, reply_to, action):
        """Send an outcome envelope straight to an asker's reply queue."""
        with self.app.producer_or_acquire() as producer:
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

    def dead_letter(self, body, reason, **context):
        """Keep a message nobody can handle in ``nautilus.dead``, with the reason.

        ``context`` adds fields to the record: ``service``, ``routing_key``, ``queue``,
        ``reply_to``, ``attempts``, ``kind`` (``"action"``: ``body`` is the task's argument;
        ``"message"``: ``body`` is the raw message, with ``headers`` and ``content_type``;
        ``"call"``: ``body`` is ``{"args", "kwargs"}`` of a task call with the wrong arguments).
        """
        extra = {}
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:  # keep the exact bytes for a faithful replay
                extra["body_base64"] = base64.b64encode(body).decode("ascii")
                body = body.decode("utf-8", errors="replace")
        record = {
            "reason": reason,
            "body": body,
            "dead_at": datetime.now(timezone.utc).isoformat(),
            **extra,
            **context,
        }
        logger.warning("dead-lettered a message: %s", reason)
        with self.app.producer_or_acquire() as producer:
            producer.publish(
                json.dumps(record, default=str),
                exchange="",
                routing_key=self.dead_letter_queue.name,
                declare=[self.dead_letter_queue],
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                retry=True,
            )

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

    def ask(self, action_type, payload=None, *, timeout):
        """Publish an action and wait for its outcome; return the reply Action.

        Raises AskTimeout when nobody answers within ``timeout`` seconds.
        """
        future, action = self._send_ask(action_type, payload)
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise AskTimeout(action.action_type, timeout) from None
        finally:
            self._replies.forget(action.correlation_id)

    async def ask_async(self, action_type, payload=None, *, timeout):
        """``ask`` for an asyncio caller; many asks can wait at once."""
        future, action = self._send_ask(action_type, payload)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            raise AskTimeout(action.action_type, timeout) from None
        finally:
            self._replies.forget(action.correlation_id)

    def _send_ask(self, action_type, payload):
        replies = self._reply_listener()
        action = self._action(action_type, payload, correlation_id=str(uuid.uuid4()))
        future = replies.expect(action.correlation_id)
        self.publish(action, reply_to=replies.queue.name)
        return future, action

    def _reply_listener(self):
        with self._replies_lock:
            if self._replies is None:
                self._replies = _ReplyListener(self.app)
                self._replies.start()
            return self._replies

    def close(self):
        if self._replies is not None:
            self._replies.stop()
            self._replies = None

    def _action(self, action_type_or_action, payload, correlation_id):
        if isinstance(action_type_or_action, Action):
            return action_type_or_action
        return Action(
            action_type=action_type_or_action,
            payload=payload if payload is not None else {},
            correlation_id=correlation_id,
            sender=self.sender,
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
    """Consumes this process's private reply queue and completes waiting asks."""

    def __init__(self, app):
        super().__init__(name="nautilus-replies", daemon=True)
        self.app = app
        # Not auto-delete: it must outlive a lost connection; the broker drops it a minute after
        # its last consumer left.
        self.queue = Queue(
            f"nautilus.reply.{uuid.uuid4().hex}", durable=False, auto_delete=False,
            queue_arguments={"x-expires": REPLY_TTL * 1000},
        )
        self.unexpected = 0  # replies nobody waited for: duplicates after a redelivery, or too late
        self._pending = {}
        self._lock = threading.Lock()
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
                with self.app.connection_for_read() as connection:
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
            self._ready.set()
            while not self._stopping.is_set():
                try:
                    connection.drain_events(timeout=0.5)
                except socket.timeout:
                    continue

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
