"""The outcomes on the bus, fanned out to the gateway's subscriptions in this process.

The gateway process's feed of outcomes (``gateway.feed``: every committed change of every
service, as its service published it after the commit) hands each envelope to the event loop of
the subscriptions, where the ``Hub`` gives it to every subscription of that change, in arrival
order: one queue, so the events of a service arrive in the order that service published them.

A delete's outcome carries the row as it was just before the delete, so a subscriber under a
read rule is judged by that row. The hub keeps the rows of the last ``Hub.DELETES_KEPT``
deletes: a connection's row deleted because a row at one of its ends was (a cascade, published
after that row's delete) is judged by that end as it was, since it can no longer be read.
Every second while there are subscriptions it looks at the registry, and tells the
subscribers of a service that stopped announcing itself (``service_unavailable``), as queries
are told.
"""
import asyncio
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from nautilus_core.actions import CRUD_METHODS, SUCCESS

from .feed import CHANGES, follow_changes
from .registry import registry

__all__ = ["Event", "Notice", "Hub", "hub", "CHANGES"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A committed change: ``method`` (create, update, delete) of the row ``payload`` of ``service``
    (with ``pk``; for a delete, the row as it was just before)."""

    method: str
    service: str
    payload: dict


@dataclass(frozen=True)
class Notice:
    """Not a change: something a subscriber is told as an error (a service gone silent, events lost)."""

    message: str
    code: str
    service: str = None


class RowMemory:
    """Rows by ``(service, pk)``, at most ``size`` of them (the oldest forgotten first)."""

    def __init__(self, size):
        self.size = size
        self._rows = OrderedDict()

    def remember(self, service, pk, row):
        key = (service, str(pk))
        self._rows[key] = row
        self._rows.move_to_end(key)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)

    def get(self, service, pk):
        return self._rows.get((service, str(pk)))

    def __len__(self):
        return len(self._rows)


class Hub:
    """Subscriptions by ``(method, service)``, in one event loop."""

    WATCH_EVERY = 1.0  # seconds between looks at which services went silent
    DELETES_KEPT = 1000  # deleted rows kept, to judge the connection deletes they cascade to

    def __init__(self):
        self._subscribers = defaultdict(set)
        self.deleted = RowMemory(self.DELETES_KEPT)
        self.snapshot = None  # the newest registry snapshot a subscription used (the services' pk names)
        self.feed = None
        self.loop = None
        self._watcher = None
        self._silent = set()

    def subscribe(self, method, service, subscriber):
        self._start()
        self._subscribers[(method, service)].add(subscriber)

    def unsubscribe(self, method, service, subscriber):
        subscribers = self._subscribers.get((method, service))
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[(method, service)]

    async def ready(self, timeout=10):
        """Once the feed's queue is bound: changes committed from then on reach the subscriptions."""
        if not self.feed.ready.is_set() and not await asyncio.to_thread(self.feed.ready.wait, timeout):
            raise ConnectionError("the gateway cannot reach the bus to follow changes")

    def count(self):
        return sum(len(s) for s in self._subscribers.values())

    def _start(self):
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # the first subscription (of this loop: tests run several)
            self.loop = loop
            if self.feed is None:
                self.feed = follow_changes(self)
            self._watcher = loop.create_task(self._watch())

    # -- from the feed's thread (gateway.feed) -------------------------------------------

    def outcome(self, service, envelope):
        self._to_loop(self.dispatch, envelope)

    def following(self):
        pass

    def lost(self, reason):
        self._to_loop(self.tell_lost, reason)

    def _to_loop(self, callback, *args):
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # that loop is closed (tests run several): the next subscription sets another
            pass

    # -- from the feed (in the loop) ---------------------------------------------------

    def dispatch(self, envelope):
        parts = str(envelope.get("action_type", "")).split(".")
        payload = envelope.get("payload")
        if len(parts) != 3 or parts[0] not in CHANGES or parts[2] != SUCCESS or not isinstance(payload, dict):
            return
        method, service = parts[0], parts[1]
        pk = payload.get(self._pk_name(service))
        if method == "delete":
            pk = payload.get("id")
        if pk is None:
            return
        event = Event(method, service, {**payload, "pk": str(pk)})
        if method == "delete":
            self.deleted.remember(service, pk, event.payload)
        for subscriber in list(self._subscribers.get((method, service), ())):
            subscriber.offer(event)

    def tell_lost(self, reason):
        """The feed lost its connection: events may have been missed meanwhile."""
        notice = Notice(f"The gateway lost its connection to the bus ({reason}): changes made meanwhile may not "
                        "have been sent. Subscribe again after reading what you need.", "events_lost")
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                subscriber.offer(notice)

    def _pk_name(self, service):
        summary = self.snapshot.service(service) if self.snapshot is not None else None
        return (summary or {}).get("pk", "id")

    async def _watch(self):
        while True:
            await asyncio.sleep(self.WATCH_EVERY)
            if not self._subscribers:
                continue
            try:
                snapshot = registry.fresh() or await sync_to_async(registry.snapshot)()
            except Exception:  # the database is away: look again later
                logger.exception("could not read the registry")
                continue
            self.snapshot = snapshot
            services = {service for _, service in self._subscribers}
            for service in services:
                silence = snapshot.silence(service)
                if silence is None:
                    self._silent.discard(service)
                elif service not in self._silent:
                    self._silent.add(service)
                    notice = Notice(f"The {service} service is unavailable: it has not announced itself for "
                                    f"{silence:.0f}s. Its changes are sent again once it is back.",
                                    "service_unavailable", service)
                    for method in CRUD_METHODS:
                        for subscriber in list(self._subscribers.get((method, service), ())):
                            subscriber.offer(notice)


hub = Hub()
