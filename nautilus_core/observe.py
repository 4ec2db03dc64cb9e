"""What a service does, seen from outside: each action, ask and request counted (``nautilus_core.metrics``)
and logged in one line (``nautilus_core.logs``).

The hooks, one per place where the thing happens:

- ``handled_action`` wraps the worker's task: it times each attempt and, when it ends, counts and
  logs it with its outcome: ``answered`` (called with the answer, when it is delivered) says
  ``success`` or ``error``, ``dead_lettered`` (the bus's dead letter) says ``dead_lettered``, a
  Celery retry ``retried``; an action without an answer (an event) is ``done``.
- ``dead_lettered`` also logs the messages refused before they reached the task (a malformed one).
- ``timed_ask`` wraps ``Bus.ask``/``ask_async``: asks in flight, and their duration by outcome.
- ``AccessLog`` wraps a service's ASGI application: one line and a count per HTTP request.
"""
import asyncio
import contextlib
import contextvars
import functools
import inspect
import time

from . import logs, metrics

__all__ = ["Attempt", "attempting", "handled_action", "answered", "dead_lettered", "timed_ask", "AccessLog",
           "service_name"]

_handling = contextvars.ContextVar("nautilus_handling", default=None)


def service_name():
    """The name of the service this process runs, or ``-``."""
    from django.core.exceptions import ImproperlyConfigured

    from .registry import get_service

    try:
        return get_service().name
    except (ImproperlyConfigured, ImportError):
        return "-"


class Attempt:
    """One attempt at an action: counted and logged once, when it ``finish``es, with its ``outcome``."""

    def __init__(self, service, envelope, attempt):
        self.service, self.attempt = service, attempt
        envelope = envelope if isinstance(envelope, dict) else {}
        action_type = envelope.get("action_type")
        self.action_type = action_type if isinstance(action_type, str) else "-"
        # a metric label only for the types this service handles: others cannot grow the series without bound
        self.label = self.action_type if self.action_type in service.handlers else "other"
        action_id = envelope.get("action_id")
        self.action_id = action_id if isinstance(action_id, str) else None
        self.trace = logs.trace_id(envelope)
        self.outcome = self.layer = None
        self.discarded = False
        self.started = time.monotonic()

    def discard(self):
        """This attempt does not count: another takes its place (``nautilus_core.batch`` hands it to the task)."""
        self.discarded = True

    def finish(self):
        if self.discarded:
            return
        seconds = time.monotonic() - self.started
        outcome = self.outcome or "done"
        if outcome == "retried":
            metrics.action_retried(self.service.name, self.label, seconds)
        else:
            metrics.action_finished(self.service.name, self.label, outcome, seconds)
        logs.log_action(self.service.name, self.action_type, outcome, seconds, self.trace,
                        action_id=self.action_id, attempt=self.attempt, layer=self.layer)


@contextlib.contextmanager
def attempting(attempt):
    """Around an Attempt: ``answered`` and ``dead_lettered`` set its outcome; at the end it is counted
    and logged once."""
    from celery.exceptions import Retry

    token = _handling.set(attempt)
    try:
        yield attempt
    except Retry:
        attempt.outcome = "retried"
        raise
    except BaseException:
        attempt.outcome = attempt.outcome or "failed"
        raise
    finally:
        _handling.reset(token)
        attempt.finish()


def handled_action(task_function):
    """Decorate the worker's task ``(task, envelope)``: each attempt is counted and logged once."""
    @functools.wraps(task_function)
    def handle(task, envelope):
        from .registry import get_service

        with attempting(Attempt(get_service(), envelope, (task.request.retries or 0) + 1)):
            return task_function(task, envelope)

    return handle


def answered(outcome):
    """The action being handled was answered with ``outcome`` (an Action, or None: no answer)."""
    seen = _handling.get()
    if seen is not None and outcome is not None and seen.outcome != "dead_lettered":
        seen.outcome = outcome.action_type.rsplit(".", 1)[-1]


def dead_lettered(service, layer, body=None, routing_key=None):
    """A letter went to the dead-letter queue: counted; the action being handled ends ``dead_lettered``,
    and a message refused before it became one is logged here."""
    from .intake import LAYERS

    metrics.dead_letter(service, layer if layer in (*LAYERS, "broker") else "other")
    seen = _handling.get()
    if seen is not None:
        seen.outcome, seen.layer = "dead_lettered", layer
        return
    action_type = body.get("action_type") if isinstance(body, dict) else None
    action_id = body.get("action_id") if isinstance(body, dict) else None
    logs.log_action(service, action_type if isinstance(action_type, str) else routing_key or "-", "dead_lettered",
                    0.0, logs.trace_id(body), action_id=action_id if isinstance(action_id, str) else None,
                    layer=layer)


def _ask_outcome(exc):
    from .exceptions import AskTimeout, NoHandler

    if isinstance(exc, AskTimeout):
        return "timeout"
    if isinstance(exc, NoHandler):
        return "no_handler"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, ConnectionError):
        return "unavailable"
    return "failed"


def timed_ask(method):
    """Decorate ``Bus.ask`` or ``Bus.ask_async`` ``(bus, action_type, …)``: asks in flight and their duration."""
    def labels(bus, action_type):
        return bus.sender or "-", getattr(action_type, "action_type", action_type)

    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def ask_async(bus, action_type, *args, **kwargs):
            with metrics.asking(*labels(bus, action_type), _ask_outcome) as ask:
                return ask.answered(await method(bus, action_type, *args, **kwargs))

        return ask_async

    @functools.wraps(method)
    def ask(bus, action_type, *args, **kwargs):
        with metrics.asking(*labels(bus, action_type), _ask_outcome) as ask:
            return ask.answered(method(bus, action_type, *args, **kwargs))

    return ask


class AccessLog:
    """ASGI middleware: an access line (method, path, status, duration) and a count per HTTP request.

    A request whose client left before an answer started is logged with status 499.
    """

    def __init__(self, app, service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        status = 499

        async def send_and_see(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        except Exception:
            status = 500 if status == 499 else status
            raise
        finally:
            seconds = time.monotonic() - started
            metrics.http_request(self.service, scope.get("method", "-"), status, seconds)
            logs.log_request(self.service, scope.get("method", "-"), scope.get("path", "-"), status, seconds)
