"""The gateway's cache of read answers: a read the cloud has answered is not asked again until it changes.

What is kept: the rows of a read ask (``read.<service>.pending``) under its **exact payload**, query,
variables and ``where`` (the caller's read rule, so each rule's answer is its own), and the API major it
was asked of. A Python ``@auth_criteria`` is applied to the rows after the read, per caller, cached or
not. Answers are kept as JSON text (decoded per hit, so no request can change another's rows), at most
``NAUTILUS_GATEWAY_CACHE`` bytes per process (estimated: key and text, plus ``ENTRY_OVERHEAD`` per
entry), the least recently used dropped first; ``0`` turns the cache off.

When it is dropped: every committed change of a service is published as
``create|update|delete.<service>.success`` (actions, and ORM writes through the outbox). The
gateway's feed of outcomes (``gateway.feed``, one exclusive queue per process) calls
``changed(service)`` from its own thread as each arrives, before it goes on, so every read that
starts after the gateway has seen a change misses. A mutation through the gateway calls it too when
its answer comes (whatever the answer), so it never returns before its own invalidation.

Races: a read whose ask was sent before a change was seen may carry rows from before the commit.
Each service has a *generation*, raised by every change; a read takes a ticket (the generation and
the feed's connection epoch) before its ask is sent, and its answer is kept only if the ticket is
still current when the answer comes. Until the feed's queue is bound, and from the moment it loses
the broker until it is bound again, the cache is empty and bypassed (changes may be missed then).
With several HTTP processes, a mutation through one raises the service's generation in the others at
once (``gateway.siblings``), before it returns.

Writes that publish no outcome (``QuerySet.update()``, ``bulk_create()``, raw SQL) are not seen:
list such services in ``APIGateway.uncached`` (never cached), or set ``NAUTILUS_GATEWAY_CACHE=0``.
"""
import json
import threading
from collections import OrderedDict, defaultdict

from nautilus_core.actions import crud_action
from nautilus_core.conf import nautilus_settings
from nautilus_core.metrics import gateway_cache_lookup
from nautilus_core.observe import service_name
from nautilus_core.versions import major_of

from .feed import follow_changes
from .siblings import shared_generations

__all__ = ["ReadCache", "read_cache", "read_through", "changed_by_gateway"]


class ReadCache:
    """Read answers (text) by ``(service, key)``, within ``budget`` bytes; thread-safe. ``shared``: the
    generations of this process's siblings (``gateway.siblings.SharedGenerations``), None without any."""

    #: bytes an entry costs beyond its key and text: the dict slot, the key tuple, two str headers, the index
    ENTRY_OVERHEAD = 400

    def __init__(self, budget, shared=None):
        self.budget = budget
        self.shared = shared
        self._shared_seen = {}  # service → its shared generation when this process last looked
        self.size = 0
        self._entries = OrderedDict()  # (service, key) → (text, cost), least recently used first
        self._keys = defaultdict(set)  # service → its keys in _entries
        self._generations = defaultdict(int)
        self._epoch = 0  # raised when the feed is lost: tickets of before are void
        self._following = False
        self._lock = threading.Lock()

    # -- reads ----------------------------------------------------------------------------

    def lookup(self, service, key):
        """``(text, None)`` on a hit; else ``(None, ticket)``, ticket None when nothing may be kept now."""
        with self._lock:
            self._sync(service)
            entry = self._entries.get((service, key))
            if entry is not None:
                self._entries.move_to_end((service, key))
                return entry[0], None
            return None, (self._epoch, self._generations[service]) if self._following else None

    def put(self, service, key, text, ticket):
        """Keep ``text`` if no change of ``service`` (nor a loss of the feed) came since ``ticket``."""
        cost = self.cost(key, text)
        if ticket is None or cost > self.budget:
            return False
        with self._lock:
            self._sync(service)
            if not self._following or ticket != (self._epoch, self._generations[service]):
                return False
            self._drop((service, key))
            self._entries[(service, key)] = (text, cost)
            self._keys[service].add(key)
            self.size += cost
            while self.size > self.budget:
                self._drop(next(iter(self._entries)))
            return True

    @classmethod
    def cost(cls, key, text):
        width = 1 if key.isascii() and text.isascii() else 4  # CPython keeps 1, 2 or 4 bytes per character
        return (len(key) + len(text)) * width + cls.ENTRY_OVERHEAD

    def _drop(self, entry_key):
        entry = self._entries.pop(entry_key, None)
        if entry is not None:
            self.size -= entry[1]
            self._keys[entry_key[0]].discard(entry_key[1])

    # -- from the feed, and from mutations ----------------------------------------------------

    def changed(self, service):
        """A change of ``service`` was seen: its entries go, and reads asked before it are not kept."""
        with self._lock:
            self._changed(service)

    def _changed(self, service):
        self._generations[service] += 1
        for key in self._keys.pop(service, ()):
            self.size -= self._entries.pop((service, key))[1]

    def _sync(self, service):
        """A sibling process made a mutation of ``service`` since this one last looked: as if seen here."""
        if self.shared is not None:
            value = self.shared.value(service)
            if self._shared_seen.get(service) != value:
                self._shared_seen[service] = value
                self._changed(service)

    def outcome(self, service, envelope):
        self.changed(service)

    def following(self):
        """The feed's queue is bound: every change from now on is seen."""
        with self._lock:
            self._following = True

    def lost(self, reason=None):
        """The feed lost the broker: changes may be missed until it is back; forget everything."""
        with self._lock:
            self._following = False
            self._epoch += 1
            self._entries.clear()
            self._keys.clear()
            self.size = 0

    def __len__(self):
        return len(self._entries)


_cache = None
_cache_lock = threading.Lock()


def read_cache():
    """This process's ReadCache, following the bus from its first use; None when it is off."""
    global _cache
    budget = nautilus_settings.GATEWAY_CACHE
    if budget <= 0:
        return None
    with _cache_lock:
        if _cache is None or _cache.budget != budget:  # the setting changed (tests): a new, empty one
            if _cache is not None:
                _cache.lost()
            _cache = ReadCache(budget, shared_generations())
            follow_changes(_cache)
        return _cache


def changed_by_gateway(service):
    """A mutation of ``service`` was answered (or failed) here: drop its entries now, here and in the sibling
    processes."""
    if _cache is not None:
        if _cache.shared is not None:
            _cache.shared.raise_(service)
        _cache.changed(service)


async def read_through(context, service, payload):
    """The answer of ``read.<service>.pending`` with ``payload``: from the cache, else asked (and kept)."""
    action_type = crud_action("read", service)
    cache = read_cache()
    # a service whose writes are not all announced is never kept; a silent one is asked (and so reported)
    if cache is None or service in context.gateway.uncached or context.snapshot.silence(service) is not None:
        gateway_cache_lookup(service_name(), "bypass")
        return await context.ask(action_type, payload)
    major = major_of(context.snapshot.service(service))
    key = json.dumps([major, payload], sort_keys=True, separators=(",", ":"), default=str)
    text, ticket = cache.lookup(service, key)
    if text is not None:
        gateway_cache_lookup(service_name(), "hit")
        return json.loads(text)
    result = await context.ask(action_type, payload)
    kept = not result.get("errors") and cache.put(service, key, json.dumps(result, separators=(",", ":")), ticket)
    gateway_cache_lookup(service_name(), "miss" if kept else "bypass")
    return result
