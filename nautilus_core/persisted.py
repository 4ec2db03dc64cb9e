"""Automatic persisted queries: Apollo's APQ protocol, at the gateway's ``/graphql`` and every service's.

A client sends ``extensions: {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}`` (a POST body's
member, or GET's ``extensions`` parameter as JSON) instead of the document:

- the hash alone, known here: the document it names runs (no text sent, none parsed: the parsed-document
  cache, ``nautilus_core.graphql``, has it under its text);
- the hash alone, unknown: the error ``PersistedQueryNotFound`` (``extensions.code``
  ``PERSISTED_QUERY_NOT_FOUND``), on which Apollo's clients send the hash again with the document;
- the hash with the document: the hash must be the SHA-256 of the document's UTF-8 (else
  ``provided sha does not match query``, a 400); the document runs, and is kept once it parsed,
  validated and fit the limits (``nautilus_core.limits``: a document over ``NAUTILUS_MAX_DOCUMENT_SIZE``
  is refused, never kept).

Documents are kept per process, at most ``NAUTILUS_PERSISTED_QUERIES`` bytes (the text, plus
``ENTRY_OVERHEAD`` per entry), the least recently used dropped first; ``0`` turns APQ off
(``PersistedQueryNotSupported``, code ``PERSISTED_QUERY_NOT_SUPPORTED``, as Apollo answers then).
"""
import hashlib
import re
import threading
from collections import OrderedDict

from .conf import nautilus_settings
from .metrics import persisted_query_lookup
from .observe import service_name

__all__ = ["PersistedQueryError", "PersistedQueries", "persisted_queries", "resolve", "remember"]

SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class PersistedQueryError(Exception):
    """A persisted-query request that cannot run: ``code`` and HTTP ``status`` (None: a GraphQL request refused,
    200, or 400 under ``application/graphql-response+json``)."""

    def __init__(self, message, code, status=None):
        super().__init__(message)
        self.code, self.status = code, status


class PersistedQueries:
    """Query texts by their SHA-256 (lower-case hex), within ``budget`` bytes; thread-safe."""

    ENTRY_OVERHEAD = 300  # the hash's str, the slot, two str headers

    def __init__(self, budget):
        self.budget = budget
        self.size = 0
        self._queries = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha):
        with self._lock:
            query = self._queries.get(sha)
            if query is not None:
                self._queries.move_to_end(sha)
            return query

    def put(self, sha, query):
        cost = self.cost(query)
        if cost > self.budget:
            return
        with self._lock:
            if sha in self._queries:
                self._queries.move_to_end(sha)
                return
            self._queries[sha] = query
            self.size += cost
            while self.size > self.budget:
                _, dropped = self._queries.popitem(last=False)
                self.size -= self.cost(dropped)

    @classmethod
    def cost(cls, query):
        return len(query) * (1 if query.isascii() else 4) + cls.ENTRY_OVERHEAD

    def __len__(self):
        return len(self._queries)


_store = None
_store_lock = threading.Lock()


def persisted_queries():
    """This process's store; None when APQ is off."""
    global _store
    budget = nautilus_settings.PERSISTED_QUERIES
    if budget <= 0:
        return None
    with _store_lock:
        if _store is None or _store.budget != budget:  # the setting changed (tests): a new, empty one
            _store = PersistedQueries(budget)
        return _store


def _extension(extensions):
    """``extensions.persistedQuery``'s hash (lower case), or None when the request does not use APQ."""
    persisted = (extensions or {}).get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise PersistedQueryError("Unsupported persisted query version: send persistedQuery "
                                  '{"version": 1, "sha256Hash": "<hex>"}.', "invalid_request", 400)
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
        raise PersistedQueryError("persistedQuery.sha256Hash must be 64 hexadecimal digits.", "invalid_request", 400)
    return sha.lower()


def resolve(query, extensions):
    """``(query, sha to keep it under, or None)`` of a request's ``query`` and ``extensions``.

    Raises PersistedQueryError for an unknown hash, a hash that is not the document's, or APQ off.
    """
    sha = _extension(extensions)
    if sha is None:
        return query, None
    store = persisted_queries()
    if store is None:
        raise PersistedQueryError("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED")
    if query is None or query == "":
        known = store.get(sha)
        persisted_query_lookup(service_name(), "hit" if known is not None else "miss")
        if known is None:
            raise PersistedQueryError("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        return known, None
    if not isinstance(query, str):
        return query, None  # refused as not a string by the caller
    if hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest() != sha:
        raise PersistedQueryError("provided sha does not match query", "persisted_query_hash_mismatch", 400)
    return query, sha


def remember(sha, query, refused):
    """Keep ``query`` under ``sha`` once it ran (``refused``: it did not parse, validate or fit the limits)."""
    store = persisted_queries()
    if sha is None or refused or store is None or len(query) > nautilus_settings.MAX_DOCUMENT_SIZE:
        return
    store.put(sha, query)
    persisted_query_lookup(service_name(), "registered")
