"""nautilus settings: one namespaced ``NAUTILUS`` dict with documented defaults.

Each setting comes from the ``NAUTILUS`` dict, else from the environment variable
``NAUTILUS_<NAME>``, else from ``DEFAULTS``. Read lazily, when code runs, and reset when
a test overrides settings (the pattern of simplejwt's ``api_settings``)::

    from nautilus_core.conf import nautilus_settings
    nautilus_settings.ASK_TIMEOUT
"""
import os

from django.conf import settings
from django.core.signals import setting_changed

__all__ = ["DEFAULTS", "nautilus_settings"]

DEFAULTS = {
    # Dotted path of the Service subclass this process runs.
    "SERVICE": None,
    # The topic exchange every action is published on (DESIGN.md §3).
    "EXCHANGE": "nautilus.actions",
    # Where messages that cannot be handled go, with their layer and reason.
    "DEAD_LETTER_QUEUE": "nautilus.dead",
    # Bounds of the dead-letter queue on RabbitMQ: at most this many letters (the oldest dropped first),
    # each kept at most this many seconds (14 days). 0: no bound.
    "DEAD_LETTER_MAX_LENGTH": 100_000,
    "DEAD_LETTER_MAX_AGE": 1_209_600,
    # "classic", or "quorum": RabbitMQ's replicated queues, with a delivery limit for poison messages.
    "QUEUE_TYPE": "classic",
    # On a quorum queue: deliveries of a message beyond the first after which it goes to the dead-letter
    # queue (a message that kills its worker each time). 0: RabbitMQ's default.
    "DELIVERY_LIMIT": 10,
    # Seconds an ask waits for its reply before it fails with a clear error; its deadline is then.
    "ASK_TIMEOUT": 5.0,
    # Seconds an asker waits past an ask's deadline for a late answer: what an answer committed
    # right at the deadline needs to arrive, and the clock skew between hosts this tolerates.
    "DEADLINE_GRACE": 0.5,
    # Gateway logins: failures per account and attempts per client address, per window (seconds).
    "LOGIN_FAILURES_PER_ACCOUNT": 5,
    "LOGIN_ATTEMPTS_PER_ADDRESS": 30,
    "LOGIN_THROTTLE_WINDOW": 300.0,
    # Gateway sessions: seconds from login after which a session ends, however often it was refreshed.
    "SESSION_MAX_LIFETIME": 30 * 86400.0,
    # registerUser answers the same whether or not the login is taken (and opens no session: log in next).
    "QUIET_REGISTRATION": False,
    # The token that opens a service's own HTTP API (/graphql) to internal callers, sent as the header
    # X-Nautilus-Internal-Token; by default one derived from the secret key (nautilus_core.internal).
    "INTERNAL_TOKEN": None,
    # Serve each service's own /graphql to anyone, on purpose (by default: staff or the internal token).
    "OPEN_SERVICE_APIS": False,
    # HTTP processes ``runservice`` serves with (``--http-processes``): uvicorn's supervised children on one port,
    # each with its own connections and its own feed of outcomes (nautilus_core/http_processes.py).
    "HTTP_PROCESSES": 1,
    # The service name put in the envelope's "sender" by processes that run no service.
    "SENDER": "cli",
    # Where this service's HTTP API answers, announced as "url" (the gateway's index links to it).
    "PUBLIC_URL": None,
    # Times an action whose handler fails unexpectedly is tried again before it is dead-lettered.
    "MAX_RETRIES": 3,
    # Seconds before the first retry; doubled for each next one (at most 30 s).
    "RETRY_BACKOFF": 0.2,
    # Seconds between a service's announcements (its heartbeat, announced in its summary); 0: only on
    # start and on roll call. Each beat also publishes what the outbox of ORM writes still holds.
    "HEARTBEAT": 10.0,
    # Gateway: heartbeats a service may miss before its fields answer service_unavailable at once.
    "HEARTBEATS_MISSED": 3,
    # Gateway: seconds after its last announcement when a silent service leaves the schema.
    "DEPARTED_AFTER": 600.0,
    # What one GraphQL request may cost, checked before it runs (nautilus_core.limits): nested fields,
    # selected fields (aliases count), values the answer may hold (a list counts as its first/last or
    # QUERY_PAGE_SIZE rows), asks over the bus, and characters of the query document.
    "MAX_QUERY_DEPTH": 15,
    "MAX_QUERY_FIELDS": 500,
    "MAX_QUERY_COST": 50000,
    "QUERY_PAGE_SIZE": 20,
    "MAX_ASKS": 50,
    "MAX_DOCUMENT_SIZE": 32768,
    # Bytes of a /graphql request body (413 above it, before it is read further).
    "MAX_REQUEST_SIZE": 1048576,
    # Whether __schema / __type queries are answered (GraphiQL needs them).
    "INTROSPECTION": True,
    # Seconds each service keeps the record of what it handled, for `manage.py trace` (pruned as it
    # records); 0: nothing is recorded.
    "TRACE_RETENTION": 604800.0,
    # Bytes (estimated) of parsed, validated documents kept per schema, so a repeated query is not parsed again.
    "DOCUMENT_CACHE_SIZE": 16777216,
    # Gateway: bytes (estimated) of read answers kept per process, dropped per service on its next outcome
    # (gateway/cache.py); 0 turns the cache off.
    "GATEWAY_CACHE": 33554432,
    # Bytes of query texts kept for automatic persisted queries (nautilus_core/persisted.py); 0 turns them off.
    "PERSISTED_QUERIES": 4194304,
    # Gateway subscriptions (gateway/subscriptions.py): events waiting to be sent per WebSocket connection
    # before it is closed as too slow (4413), operations one connection may run at once, seconds a client
    # has to send connection_init (4408).
    "SUBSCRIPTION_BUFFER": 100,
    "SUBSCRIPTIONS_PER_CONNECTION": 100,
    "CONNECTION_INIT_TIMEOUT": 3.0,
    # Group commit (nautilus_core/batch.py): actions a worker applies in one transaction at most (not more
    # than CELERY_WORKER_PREFETCH_MULTIPLIER, 16), and seconds it waits at most for more to come; 0 sends
    # every action through Celery's task, one transaction each.
    "BATCH_SIZE": 16,
    "BATCH_WAIT": 0.005,
}


def _parse(raw, default):
    """An environment variable's value, as the type of its default (booleans: 1/0, true/false, yes/no)."""
    if isinstance(default, bool):
        if raw.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"expected a boolean (1/0, true/false), got {raw!r}")
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return type(default)(raw) if default is not None else raw


class NautilusSettings:
    def __init__(self, defaults):
        self._defaults = defaults
        self._cache = {}

    def __getattr__(self, name):
        if name not in self._defaults:
            raise AttributeError(f"Unknown nautilus setting: {name!r}")
        if name not in self._cache:
            user = getattr(settings, "NAUTILUS", {})
            default = self._defaults[name]
            if name in user:
                value = user[name]
            elif f"NAUTILUS_{name}" in os.environ:
                raw = os.environ[f"NAUTILUS_{name}"]
                value = _parse(raw, default)
            else:
                value = default
            self._cache[name] = value
        return self._cache[name]

    def reload(self):
        self._cache.clear()


nautilus_settings = NautilusSettings(DEFAULTS)


def _reload(*, setting, **kwargs):
    if setting == "NAUTILUS":
        nautilus_settings.reload()  # the service built from the old settings is forgotten too (nautilus_core.registry)


setting_changed.connect(_reload, dispatch_uid="nautilus_core.conf.reload")
