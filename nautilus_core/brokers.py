"""The brokers nautilus runs on, and the kombu transport and options each one needs.

=============================  ===========  ======================================================
``NAUTILUS_BROKER_URL``        broker       kombu transport
=============================  ===========  ======================================================
``amqp://``, ``amqps://``,     RabbitMQ     kombu's py-amqp transport (publisher confirms in workers)
``pyamqp://``
``redis://``, ``rediss://``    Redis        ``nautilus_core.redis_transport`` (kombu's, see there)
unset, or ``filesystem://``    embedded     ``nautilus_core.embedded`` (files under ``var/bus``)
=============================  ===========  ======================================================

Any other scheme is refused when the settings load (``UnsupportedBroker``), in one line
that lists these. Read from the environment, for Redis only:

- ``NAUTILUS_REDIS_VISIBILITY_TIMEOUT`` (seconds, default 300): how long a message taken by
  a worker may stay unacknowledged before Redis gives it to another worker. It is what a
  worker killed mid-action costs (RabbitMQ redelivers at once); it must exceed the longest
  handler and retry backoff (at most 30 s), or a slow action is handled twice at once.
- ``NAUTILUS_REDIS_KEY_PREFIX`` (default none): put before every key nautilus (kombu) writes,
  so several clouds (or test runs) share one Redis database without seeing each other.

Everything that opens a connection (settings, ``bus.connect``, the test kit, the benchmarks)
takes its transport from ``connection_options(url)``, so all of them agree on keys and timeouts.
"""
import os
import re
import ssl
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

__all__ = ["SCHEMES", "UnsupportedBroker", "broker_of", "connection_options", "connection",
           "embedded_transport_options", "redis_transport_options"]

# scheme → broker
SCHEMES = {"amqp": "rabbitmq", "amqps": "rabbitmq", "pyamqp": "rabbitmq",
           "redis": "redis", "rediss": "redis", "filesystem": "embedded"}

REDIS_VISIBILITY_TIMEOUT = 300.0

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


class UnsupportedBroker(ImproperlyConfigured):
    """``NAUTILUS_BROKER_URL`` names a broker nautilus does not run on."""

    def __init__(self, url):
        scheme = scheme_of(url)  # only the scheme is repeated: the rest may hold a password
        refused = f"unsupported broker {scheme!r}" if scheme else "not a broker URL"
        super().__init__(
            f"NAUTILUS_BROKER_URL: {refused}; use amqp://, amqps:// or pyamqp:// (RabbitMQ), "
            "redis:// or rediss:// (Redis), or leave it unset for the embedded bus (filesystem://)"
        )


def scheme_of(url):
    """The scheme of ``scheme://…`` in lower case, or None (read by hand: ``urlsplit`` raises on some netlocs)."""
    match = _SCHEME.match(url)
    return match[1].lower() if match else None


def broker_of(url):
    """``"rabbitmq"``, ``"redis"`` or ``"embedded"``; UnsupportedBroker for anything else."""
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise UnsupportedBroker(url)
    return SCHEMES[scheme]


def connection_options(url, var_dir=None):
    """The kombu ``Connection`` arguments for a broker URL: ``transport`` (None: kombu's own for the
    scheme), ``transport_options`` and ``ssl`` (None: as the URL says)."""
    broker = broker_of(url)
    if broker == "embedded":
        # kombu's filesystem transport, with its races between processes fixed (see nautilus_core/embedded.py)
        return {"transport": "nautilus_core.embedded:Transport", "ssl": None,
                "transport_options": embedded_transport_options(var_dir or _default_var_dir())}
    if broker == "redis":
        # kombu turns rediss:// into TLS only for its own transport name, and then without
        # checking the certificate: here TLS with a checked certificate, unless the URL's
        # ssl_cert_reqs says otherwise
        secure = scheme_of(url) == "rediss"
        return {"transport": "nautilus_core.redis_transport:Transport", "transport_options": redis_transport_options(),
                "ssl": {"ssl_cert_reqs": ssl.CERT_REQUIRED} if secure else None}
    return {"transport": None, "transport_options": {}, "ssl": None}


def connection(url, **transport_options):
    """A kombu Connection to ``url`` with nautilus's transport for it (``transport_options`` add to its own)."""
    from kombu import Connection

    options = connection_options(url)
    return Connection(url, transport=options["transport"], ssl=options["ssl"] or False,
                      transport_options={**options["transport_options"], **transport_options})


def embedded_transport_options(var_dir):
    """kombu's file-backed transport: processes on one machine meet in a shared folder."""
    bus_dir = Path(var_dir) / "bus"
    for folder in ("data", "control"):
        (bus_dir / folder).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(bus_dir / "data"),
        "data_folder_out": str(bus_dir / "data"),
        "control_folder": str(bus_dir / "control"),
        "polling_interval": 0.005,
        "store_processed": False,
    }


def redis_transport_options(environ=os.environ):
    visibility_timeout = float(environ.get("NAUTILUS_REDIS_VISIBILITY_TIMEOUT") or REDIS_VISIBILITY_TIMEOUT)
    if visibility_timeout <= 0:
        raise ImproperlyConfigured("NAUTILUS_REDIS_VISIBILITY_TIMEOUT must be a number of seconds above 0")
    return {
        "visibility_timeout": visibility_timeout,
        # Overdue messages are looked for this often by every consumer (kombu: every 100 s by
        # default, whatever the timeout), so a short timeout is honoured within a second or so.
        "unacked_restore_interval": min(10.0, max(1.0, visibility_timeout / 4)),
        "unacked_restore_throttle": 1,
        # kombu's lock on restoring lives 300 s: a worker killed holding it stopped every restore for
        # that long. Restoring twice at once is harmless (each message is moved in a transaction).
        "unacked_mutex_expire": min(10.0, visibility_timeout),
        # one list per queue (no priorities: nautilus sends none), so a worker takes with BLMOVE
        # (nautilus_core.redis_transport)
        "priority_steps": [0],
        "global_keyprefix": environ.get("NAUTILUS_REDIS_KEY_PREFIX", ""),
    }


def _default_var_dir():
    return Path(os.environ.get("NAUTILUS_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
