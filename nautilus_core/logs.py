"""Logs a person can read: one line per action, one per HTTP request, and little else by default.

``logging_config()`` is every service's ``LOGGING`` (Django's dict config, applied by
``django.setup()``, in the HTTP server and in the worker alike: ``setup_logging`` below keeps
Celery from configuring its own). The environment chooses:

- ``NAUTILUS_LOG_FORMAT``: ``text`` (default) or ``json``: one JSON object per line, with the
  fields of an action (``service``, ``action_type``, ``outcome``, ``duration_ms``, ``trace_id``,
  ``action_id``…) or of a request (``method``, ``path``, ``status``…) as keys.
- ``NAUTILUS_LOG_VERBOSE=1`` (``runservice --verbose``, ``cloud up --verbose``): Celery's banner,
  its "Task … received/succeeded" lines (retries: see ``nautilus_core.batch``) and its warnings,
  kombu's, and nautilus's DEBUG lines (heartbeats, roll calls, probes and scrapes) come back.

The lines, in text::

    2026-11-25 10:03:12,345 INFO action recipe create.recipe.pending success 4.1ms trace=<trace id>
    2026-11-25 10:03:12,350 INFO http api POST /graphql 200 12.3ms

with ``trace=4bf92f3577b34da6a3ce929d0e0e4736``, say, or ``trace=-``.

The trace id is the one of the envelope's W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``),
``-`` without one. Announcements and roll calls (every heartbeat) and the requests of probes and
scrapers (``/health``, ``/health/live``, ``/metrics``) are logged at DEBUG.
"""
import datetime
import json
import logging
import os
import re
import threading
import time
import warnings

__all__ = ["FORMAT_ENV", "VERBOSE_ENV", "verbose", "logging_config", "TextFormatter", "JSONFormatter",
           "DropNoise", "set_verbose", "trace_id", "log_action", "log_request", "connect_celery", "still"]

FORMAT_ENV = "NAUTILUS_LOG_FORMAT"
VERBOSE_ENV = "NAUTILUS_LOG_VERBOSE"

action_logger = logging.getLogger("nautilus_core.actions")
access_logger = logging.getLogger("nautilus_core.access")

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_ROUTINE_ACTIONS = frozenset({"init.service.pending", "roll_call"})  # every heartbeat: DEBUG
_PROBE_PATHS = frozenset({"/health", "/health/live", "/metrics"})  # probes and scrapers: DEBUG


def verbose():
    """Whether this process (and the ones it starts) logs verbosely."""
    return os.environ.get(VERBOSE_ENV, "") == "1"


def set_verbose():
    """``--verbose``: log verbosely from now on, and so do the children this process starts."""
    import logging.config

    os.environ[VERBOSE_ENV] = "1"
    logging.config.dictConfig(logging_config(loud=True))


def logging_config(log_format=None, loud=None):
    """The ``LOGGING`` dict of a service (and of the commands): see the module's docstring."""
    log_format = log_format or os.environ.get(FORMAT_ENV, "text")
    if log_format not in ("text", "json"):
        log_format = "text"
    loud = verbose() if loud is None else loud
    ours = "DEBUG" if loud else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"noise": {"()": "nautilus_core.logs.DropNoise"}},
        "formatters": {"text": {"()": "nautilus_core.logs.TextFormatter"},
                       "json": {"()": "nautilus_core.logs.JSONFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": log_format,
                                 "filters": [] if loud else ["noise"]}},
        "root": {"handlers": ["console"], "level": "INFO" if loud else "WARNING"},
        "loggers": {
            "nautilus_core": {"level": ours}, "model_service": {"level": ours},
            "connection_service": {"level": ours}, "gateway": {"level": ours},
            # Celery's "Task … received/succeeded" are replaced by the action lines; "<worker> ready." stays
            # (cloud up and the test kit wait for it)
            "celery": {"level": "INFO" if loud else "WARNING"},
            "celery.apps.worker": {"level": "INFO"},
            "django.request": {"level": "ERROR"},
        },
    }


class DropNoise(logging.Filter):
    """Drops what is said once per connection and means nothing to a reader (kombu's "No hostname was
    supplied" on the embedded bus, which needs no host)."""

    def filter(self, record):
        return not (record.name == "kombu.connection" and str(record.msg).startswith("No hostname was supplied"))


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <message>``; a record of a library names its logger first."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatMessage(self, record):
        text = super().formatMessage(record)
        if hasattr(record, "nautilus"):
            return text
        head = f"{record.asctime} {record.levelname} "
        return f"{head}{record.name}: {text[len(head):]}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
    fields of an action or a request, and ``exception`` when there is one."""

    def format(self, record):
        line = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                **getattr(record, "nautilus", {})}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def trace_id(envelope):
    """The trace id of an envelope's ``traceparent`` (W3C), or ``-``."""
    value = envelope.get("traceparent") if isinstance(envelope, dict) else None
    match = _TRACEPARENT.match(value) if isinstance(value, str) else None
    return match.group(1) if match and match.group(1) != "0" * 32 else "-"


def _printable(text, limit=200):
    """A string from outside (a path, a routing key) as one short word: spaces and control characters escaped."""
    return "".join(c if c.isprintable() and c != " " else "%20" if c == " " else c.encode("unicode_escape").decode()
                   for c in str(text)[:limit])


def log_action(service, action_type, outcome, seconds, trace, *, action_id=None, attempt=1, layer=None):
    """The line of one action handled (or refused) by ``service``."""
    level = logging.DEBUG if action_type in _ROUTINE_ACTIONS and outcome in ("done", "success") else (
        logging.WARNING if outcome == "dead_lettered" else logging.INFO)
    if not action_logger.isEnabledFor(level):
        return
    fields = {"service": service, "action_type": action_type, "outcome": outcome,
              "duration_ms": round(seconds * 1000, 1), "trace_id": trace, "action_id": action_id, "attempt": attempt}
    if layer:
        fields["layer"] = layer
    extra = f" attempt={attempt}" if attempt > 1 else ""
    extra += f" layer={layer}" if layer else ""
    action_logger.log(level, "action %s %s %s %.1fms trace=%s%s", service, _printable(action_type), outcome,
                      seconds * 1000, trace, extra, extra={"nautilus": fields})


def log_request(service, method, path, status, seconds):
    """The access line of one HTTP request (its path without the query string, which may hold secrets)."""
    level = logging.DEBUG if path in _PROBE_PATHS else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    fields = {"service": service, "method": method, "path": path, "status": status,
              "duration_ms": round(seconds * 1000, 1)}
    access_logger.log(level, "http %s %s %s %s %.1fms", service, _printable(method, 16), _printable(path), status,
                      seconds * 1000, extra={"nautilus": fields})


# -- Celery ------------------------------------------------------------------------------------


def connect_celery():
    """Keep Celery's worker on these logs: it configures no logging of its own (``setup_logging``),
    and without ``--verbose`` its warning against running as root is not repeated by every worker
    (``cloud up`` says it once)."""
    from celery import signals

    signals.setup_logging.connect(_keep_django_logging, dispatch_uid="nautilus_core.logs.setup", weak=False)
    signals.celeryd_init.connect(_quiet_warnings, dispatch_uid="nautilus_core.logs.warnings", weak=False)


def _keep_django_logging(loglevel=None, **kwargs):
    """Django applied ``LOGGING`` when the worker set it up; a ``--loglevel=DEBUG`` lowers it."""
    if loglevel is not None and loglevel < logging.INFO:
        logging.getLogger().setLevel(loglevel)


def _quiet_warnings(**kwargs):
    if not verbose():
        from celery.exceptions import SecurityWarning

        warnings.filterwarnings("ignore", category=SecurityWarning)


# -- saying what is going on -------------------------------------------------------------------


class still(threading.Thread):
    """``with still(say, "migrating"):`` says ``still migrating (5s)`` every ``every`` seconds until
    the block ends, so that a long step is never silent; ``detail()`` may add what it waits for."""

    def __init__(self, say, doing, every=5.0, detail=None):
        super().__init__(name="still", daemon=True)
        self.say, self.doing, self.every, self.detail = say, doing, every, detail
        self._done = threading.Event()

    def __enter__(self):
        self.started = time.monotonic()
        self.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self.join(1)

    def run(self):
        while not self._done.wait(self.every):
            more = self.detail() if self.detail else ""
            self.say(f"still {self.doing} ({time.monotonic() - self.started:.0f}s){': ' + more if more else ''}")
