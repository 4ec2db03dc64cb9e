"""Prometheus metrics of a service, served at ``/metrics`` (``prometheus-client``).

=================================================== ===========================================================
metric                                              what it counts
=================================================== ===========================================================
``nautilus_actions_handled_total``                  actions a worker finished, by ``service``, ``action_type``
                                                    and ``outcome``: ``success`` and ``error`` (the answer),
                                                    ``done`` (an event or an action needing no answer),
                                                    ``dead_lettered``
``nautilus_action_duration_seconds``                histogram of each attempt (handler, commit, publishing), by
                                                    ``service`` and ``action_type``
``nautilus_action_retries_total``                   attempts that failed and will be tried again
``nautilus_batch_actions``                          histogram of the actions a worker applied in one
                                                    transaction (group commit: ``nautilus_core.batch``)
``nautilus_dead_letters_total``                     letters sent to ``nautilus.dead``, by ``service`` and ``layer``
``nautilus_asks_in_flight``                         asks waiting for their answer, by ``service`` (the asker)
``nautilus_ask_duration_seconds``                   histogram of asks, by ``service``, ``action_type`` and
                                                    ``outcome`` (``success``, ``error``, ``timeout``,
                                                    ``no_handler``, ``unavailable``, ``cancelled``, ``failed``)
``nautilus_http_requests_total``                    HTTP requests, by ``service``, ``method`` and ``status``
``nautilus_http_request_duration_seconds``          histogram of HTTP requests, by ``service`` and ``method``
``nautilus_graphql_document_cache_total``           look-ups in the parsed-document cache of ``/graphql``, by
                                                    ``service`` and ``result`` (``hit``, ``miss``)
``nautilus_gateway_cache_total``                    reads at the gateway, by ``service`` (the gateway) and
                                                    ``result``: ``hit`` (answered from its cache), ``miss``
                                                    (asked, then kept), ``bypass`` (asked, not kept: the cache
                                                    is off, its feed is away, a change came meanwhile)
``nautilus_persisted_queries_total``                automatic persisted queries, by ``service`` and
                                                    ``result``: ``hit``, ``miss`` (PersistedQueryNotFound),
                                                    ``registered``
=================================================== ===========================================================

Labels hold no payload, id or user: only names a service declares (its action types, bounded by
its handlers: another type is ``other``), layers, outcomes, methods and status codes.

Several processes of one service (``runservice``'s HTTP server and its worker, a prefork pool, more
HTTP processes) write to one folder with prometheus-client's multiprocess mode, and ``/metrics`` in
any of them adds them up. ``runservice`` makes that folder, empty, for itself and its worker
(``<NAUTILUS_VAR_DIR>/metrics/<service>-<pid>``, removed when it stops), or empties the one
``PROMETHEUS_MULTIPROC_DIR`` names. Without it a process counts for itself only. The metric
objects are made at their first use, so the mode is the one in force then, even when
prometheus-client was imported before the folder was set.
"""
import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

__all__ = ["MULTIPROC_ENV", "prepare_directory", "remove_directory", "process_exited", "exposition",
           "action_finished", "action_retried", "batch_applied", "dead_letter", "asking", "http_request",
           "document_cache_lookup", "gateway_cache_lookup", "persisted_query_lookup", "metrics_view"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# seconds; an action is mostly a transaction and a few publishes, an ask waits for one
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_lock = threading.Lock()
_metrics = None
_made = set()  # the folders prepare_directory made (remove_directory removes only those)


class _Metrics:
    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram, values

        # the mode of PROMETHEUS_MULTIPROC_DIR now (prometheus-client reads it once, when imported)
        values.ValueClass = values.get_value_class()
        self.actions = Counter("nautilus_actions_handled", "Actions a worker finished, by outcome.",
                               ["service", "action_type", "outcome"])
        self.action_seconds = Histogram("nautilus_action_duration_seconds",
                                        "Time to handle an action (handler, commit, publishing), per attempt.",
                                        ["service", "action_type"], buckets=DURATION_BUCKETS)
        self.retries = Counter("nautilus_action_retries", "Attempts that failed and will be tried again.",
                               ["service", "action_type"])
        self.batch_actions = Histogram("nautilus_batch_actions", "Actions applied in one transaction.",
                                       ["service"], buckets=BATCH_BUCKETS)
        self.dead_letters = Counter("nautilus_dead_letters", "Letters sent to the dead-letter queue, by layer.",
                                    ["service", "layer"])
        self.asks_in_flight = Gauge("nautilus_asks_in_flight", "Asks waiting for their answer.", ["service"],
                                    multiprocess_mode="livesum")
        self.ask_seconds = Histogram("nautilus_ask_duration_seconds", "Time from an ask to its answer, by outcome.",
                                     ["service", "action_type", "outcome"], buckets=DURATION_BUCKETS)
        self.http_requests = Counter("nautilus_http_requests", "HTTP requests, by status.",
                                     ["service", "method", "status"])
        self.http_seconds = Histogram("nautilus_http_request_duration_seconds", "Time to answer an HTTP request.",
                                      ["service", "method"], buckets=DURATION_BUCKETS)
        self.document_cache = Counter("nautilus_graphql_document_cache",
                                      "Look-ups of a query text in the parsed-document cache of /graphql.",
                                      ["service", "result"])
        self.gateway_cache = Counter("nautilus_gateway_cache", "Reads at the gateway, from its cache or asked.",
                                     ["service", "result"])
        self.persisted_queries = Counter("nautilus_persisted_queries", "Automatic persisted queries, by result.",
                                         ["service", "result"])


def _get():
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# -- the folder of several processes -----------------------------------------------------------


def prepare_directory(service_name, var_dir):
    """Give this process and the children it starts one empty multiprocess folder; return its path.

    ``PROMETHEUS_MULTIPROC_DIR`` when set (its ``*.db`` files are removed), else
    ``<var_dir>/metrics/<service>-<pid>``; the folders of this service's processes that are gone
    are removed too. Call it before the first metric is recorded.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return path
    base = Path(var_dir) / "metrics"
    for old in base.glob(f"{service_name}-*"):
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = base / f"{service_name}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    _made.add(path)
    return path


def remove_directory(path):
    """Remove a folder ``prepare_directory`` made (not one the environment named)."""
    if path in _made:
        shutil.rmtree(path, ignore_errors=True)
        _made.discard(path)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_exited(pid):
    """A process that wrote to the multiprocess folder is gone: its live gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# -- recording ---------------------------------------------------------------------------------


def action_finished(service, action_type, outcome, seconds):
    metrics = _get()
    metrics.actions.labels(service, action_type, outcome).inc()
    metrics.action_seconds.labels(service, action_type).observe(seconds)


def action_retried(service, action_type, seconds):
    metrics = _get()
    metrics.retries.labels(service, action_type).inc()
    metrics.action_seconds.labels(service, action_type).observe(seconds)


def batch_applied(service, size):
    _get().batch_actions.labels(service).observe(size)


def dead_letter(service, layer):
    _get().dead_letters.labels(service, layer).inc()


class _Ask:
    outcome = "failed"

    def answered(self, reply):
        self.outcome = reply.action_type.rsplit(".", 1)[-1] if reply is not None else "failed"
        return reply


@contextlib.contextmanager
def asking(service, action_type, classify):
    """Count an ask in flight while the block runs, then its duration by outcome (``classify(exc)``
    names the outcome of an exception; the block calls ``answered(reply)`` with the answer)."""
    metrics = _get()
    gauge = metrics.asks_in_flight.labels(service)
    ask = _Ask()
    started = time.monotonic()
    gauge.inc()
    try:
        yield ask
    except BaseException as exc:
        ask.outcome = classify(exc)
        raise
    finally:
        gauge.dec()
        metrics.ask_seconds.labels(service, action_type, ask.outcome).observe(time.monotonic() - started)


def http_request(service, method, status, seconds):
    metrics = _get()
    method = method if method in HTTP_METHODS else "other"
    metrics.http_requests.labels(service, method, str(status)).inc()
    metrics.http_seconds.labels(service, method).observe(seconds)


def document_cache_lookup(service, hit):
    _get().document_cache.labels(service, "hit" if hit else "miss").inc()


def gateway_cache_lookup(service, result):
    """A read at the gateway: ``hit``, ``miss`` or ``bypass`` (gateway/cache.py)."""
    _get().gateway_cache.labels(service, result).inc()


def persisted_query_lookup(service, result):
    """An automatic persisted query: ``hit``, ``miss`` or ``registered`` (nautilus_core/persisted.py)."""
    _get().persisted_queries.labels(service, result).inc()


# -- exposition --------------------------------------------------------------------------------


def exposition():
    """``(body, content type)`` of every metric of this service: of all its processes in multiprocess mode."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    _get()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_view(request):
    """``/metrics``: open like ``/health`` (see the README's Metrics), or internal with
    ``NAUTILUS_METRICS_INTERNAL=1``."""
    from django.http import HttpResponse

    from .internal import internal

    def view(request):
        body, content_type = exposition()
        return HttpResponse(body, content_type=content_type)

    if os.environ.get("NAUTILUS_METRICS_INTERNAL", "") == "1":
        return internal(view)(request)
    return view(request)
