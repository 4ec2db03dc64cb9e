"""The gateway process's feed of outcomes: every committed change of every service, as it is published.

One ``EventFeed`` per gateway process (``follow_changes``: started by the read cache, ``gateway.cache``,
when the process serves its first query, or by the first subscription, ``gateway.events``) consumes an
exclusive, auto-delete queue of its own, bound to ``create|update|delete.*.success``: every committed
change of every service, as its service published it after the commit. One queue, so the outcomes of a
service arrive in the order that service published them (its commit order). A thread reads the broker
(kombu is synchronous) and tells each *watcher*, in that thread, in arrival order:

- ``outcome(service, envelope)`` for each outcome (the read cache drops that service's answers then,
  before the next outcome is read; the subscriptions' hub hands it to its event loop);
- ``following()`` once the queue is bound (again): every change from then on comes;
- ``lost(reason)`` when the feed loses the broker after it was bound: changes may be missed until it
  follows again (the queue goes with the connection; a new one is bound when the feed reconnects). A
  closed connection is noticed at once, one that hangs by AMQP heartbeats (``HEARTBEAT``) within 20 s.
"""
import logging
import socket
import threading
import uuid

from kombu import Consumer, Queue, binding

from nautilus_core.actions import SUCCESS, crud_action
from nautilus_core.bus import actions_exchange, envelope_of_task_message
from nautilus_core.conf import nautilus_settings
from nautilus_core.service import get_service

__all__ = ["EventFeed", "follow_changes", "CHANGES"]

logger = logging.getLogger(__name__)

#: the outcome methods the feed follows
CHANGES = ("create", "update", "delete")


class EventFeed(threading.Thread):
    """Consumes this process's queue of outcomes and tells its watchers of each."""

    #: seconds between AMQP heartbeats: a broker gone without closing the connection is noticed within two
    HEARTBEAT = 10

    def __init__(self, app):
        super().__init__(name="nautilus-events", daemon=True)
        self.app = app
        exchange = actions_exchange(nautilus_settings.EXCHANGE)
        self.queue = Queue(f"nautilus.events.{uuid.uuid4().hex}", exchange=exchange, durable=False,
                           exclusive=True, auto_delete=True,
                           bindings=[binding(exchange, routing_key=crud_action(method, "*", SUCCESS))
                                     for method in CHANGES])
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self.connections = 0
        self.watchers = []
        self._lock = threading.Lock()  # watchers and ready change together

    def watch(self, watcher):
        with self._lock:
            self.watchers.append(watcher)
            if self.ready.is_set():
                watcher.following()

    def stop(self):
        self._stopping.set()

    def run(self):
        while not self._stopping.is_set():
            try:
                with self.app.connection_for_read(heartbeat=self.HEARTBEAT) as connection:
                    self._consume(connection)
            except Exception as exc:  # the broker went away: reconnect, and say changes may be missed
                if self._stopping.is_set():
                    break
                logger.warning("the event feed lost its connection (%s); reconnecting", exc)
                with self._lock:
                    if self.ready.is_set():
                        self.ready.clear()
                        for watcher in self.watchers:
                            watcher.lost(str(exc) or type(exc).__name__)
                self._stopping.wait(1)

    def _consume(self, connection):
        connection.ensure_connection(max_retries=None)
        channel = connection.channel()
        with Consumer(channel, queues=[self.queue], callbacks=[self._on_message], accept=["json"], no_ack=True):
            self.connections += 1
            with self._lock:
                self.ready.set()
                for watcher in self.watchers:
                    watcher.following()
            while not self._stopping.is_set():
                try:
                    connection.drain_events(timeout=1)
                except socket.timeout:
                    pass
                connection.heartbeat_check()  # a connection that hangs without closing is lost too

    def _on_message(self, body, message):
        envelope = envelope_of_task_message(body)
        if not isinstance(envelope, dict):
            return
        parts = str(envelope.get("action_type", "")).split(".")
        if len(parts) != 3 or parts[0] not in CHANGES or parts[2] != SUCCESS:
            return
        for watcher in list(self.watchers):
            watcher.outcome(parts[1], envelope)


_feed = None
_feed_lock = threading.Lock()


def follow_changes(watcher):
    """Tell ``watcher`` of every change from now on (starting this process's feed once); the feed."""
    global _feed
    with _feed_lock:
        if _feed is None:
            _feed = EventFeed(get_service().bus.app)
            _feed.start()
    _feed.watch(watcher)
    return _feed
