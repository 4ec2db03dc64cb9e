"""Trace context on the bus: every envelope says which trace it belongs to and which action caused it.

An envelope carries ``traceparent`` (W3C Trace Context, ``00-<trace id>-<parent id>-<flags>``) and
``caused_by`` (the ``action_id`` of the action whose handling sent it). Both are set when an Action
is made, from the context of the code that makes it:

- while a service handles an action (``handling``): the action's trace, and its id as ``caused_by``
  (so its outcome, the events it emits and the cascades they cause all carry the trace on);
- while an HTTP request is served (``TraceMiddleware``): the client's ``traceparent`` header when it
  is valid, else a new trace; the gateway's asks start there;
- elsewhere (``manage.py publish``, a heartbeat): a new trace, and no ``caused_by``.

Envelopes are untrusted: a ``traceparent`` that is not valid W3C (read by OpenTelemetry's
propagator) is replaced by a new trace, a ``caused_by`` that is not a short string is dropped;
neither ever refuses an action. With OpenTelemetry configured (``nautilus_core.otel``) the parent
id is the current span's, so spans link through the bus; without it, ids are random.

Each service records what it handled (``TracedAction``) for ``NAUTILUS_TRACE_RETENTION`` seconds
(pruned as it records); ``manage.py trace`` gathers the records over the bus (``trace.service.pending``,
answered by ``answer``) and prints the timeline (``nautilus_core.timeline``).
"""
import contextlib
import contextvars
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from . import otel
from .trace_context import (CAUSED_BY_LENGTH, TRACEPARENT_LENGTH, TraceContext, _continued, _current,
                            caused_by, current, new_traceparent, parse_traceparent, read_caused_by,
                            read_traceparent)

__all__ = ["TRACEPARENT_LENGTH", "CAUSED_BY_LENGTH", "TraceContext", "parse_traceparent", "read_traceparent",
           "read_caused_by", "new_traceparent", "caused_by", "current", "handling", "note_outcome",
           "note_refused", "record_with_action", "record_of", "save_kept", "request_trace", "TraceMiddleware",
           "prune", "answer", "UNTRACED"]

logger = logging.getLogger(__name__)

# types whose handling is not recorded: the cloud's own chatter (announcements, roll calls, trace queries)
UNTRACED = frozenset({"init.service.pending", "roll_call", "trace.service.pending"})
RECORDS_PER_ANSWER = 1000  # a service answers at most this many records to one trace query
PRUNE_EVERY = 60.0  # seconds between two prunings by one process


# -- handling an action: the context, its span, its record ---------------------------------------


@dataclass
class _Handling:
    service: object
    raw: object
    attempt: int
    final: bool
    started: float = field(default_factory=time.monotonic)
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    status: str | None = None
    outcome: object = None
    published: list = field(default_factory=list)
    context: object = None
    action_id: str | None = None
    action_type: str = ""
    recorded: bool = False  # committed with the action's own transaction (``record_with_action``)


_handling = contextvars.ContextVar("nautilus_handling", default=None)


def _text(raw, key, limit=255):
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and len(value) <= limit and value.isprintable() else None


@contextlib.contextmanager
def handling(service, raw, *, attempt=1, final=True):
    """Around ``Service.receive``: the action's trace is the current one (a new one when its
    traceparent is missing or invalid), a span covers the handling (OpenTelemetry), and what
    happened is recorded when it ends."""
    traceparent = read_traceparent(raw.get("traceparent") if isinstance(raw, dict) else None)
    action_id = _text(raw, "action_id", CAUSED_BY_LENGTH)
    action_type = _text(raw, "action_type") or ""
    state = _Handling(service, raw, attempt, final, action_id=action_id, action_type=action_type)
    with otel.handler_span(service.name, action_type, action_id, traceparent) as span_context:
        # OpenTelemetry: the handler's span is the parent of what it sends
        context = (TraceContext(*span_context, action_id=action_id) if span_context is not None
                   else _continued(traceparent, action_id))
        state.context = context
        token, handling_token = _current.set(context), _handling.set(state)
        try:
            yield state
        except Exception:
            state.status = "retried" if not final else "dead-lettered"
            raise
        finally:
            _current.reset(token)
            _handling.reset(handling_token)
            if action_id and action_type not in UNTRACED:
                if state.recorded:
                    _prune_quietly(service)
                else:
                    _record(state, context, action_id, action_type)


def record_with_action(outcome, outbox):
    """Inside a recorded action's own transaction: its trace record commits with it.

    One commit per action instead of two (a commit pays an fsync). Called last in the transaction:
    only a failed commit can still undo the record, and then the action is tried again and recorded.
    """
    state = _handling.get()
    if state is None or not state.action_id or state.action_type in UNTRACED:
        return
    note_outcome(outcome, outbox)
    _record(state, state.context, state.action_id, state.action_type, prune_now=False)
    state.recorded = True


def record_of(outcome, outbox):
    """The trace record of the action being handled, not saved (None when untraced or recording is off):
    ``nautilus_core.batch`` saves a batch's records together, in its transaction."""
    from .conf import nautilus_settings
    from .models import TracedAction

    state = _handling.get()
    if state is None or not state.action_id or state.action_type in UNTRACED:
        return None
    state.recorded = True
    if nautilus_settings.TRACE_RETENTION <= 0:
        return None
    note_outcome(outcome, outbox)
    return _row(TracedAction, state, state.context, state.action_id, state.action_type)


def note_outcome(outcome, outbox):
    """``Service.deliver``: the answer and the envelopes published because of the action."""
    state = _handling.get()
    if state is not None:
        state.outcome = outcome
        state.published = [{"action_id": e.action_id, "action_type": e.action_type, "sent_at": e.sent_at}
                           for e in outbox]


def note_refused(service, raw):
    """``nautilus_core.intake``: the message was dead-lettered (recorded even outside ``handling``:
    a message refused before Celery read it)."""
    state = _handling.get()
    if state is not None:
        state.status = "dead-lettered"
        return
    action_id = _text(raw, "action_id", CAUSED_BY_LENGTH)
    if action_id:
        state = _Handling(service, raw, 1, True, status="dead-lettered")
        context = _continued(read_traceparent(raw.get("traceparent")))
        _record(state, context, action_id, _text(raw, "action_type") or "")


def _status(state):
    if state.status is not None:
        return state.status
    outcome = state.outcome
    if outcome is not None and outcome.action_type.endswith(".error"):
        code = outcome.payload.get("code") if isinstance(outcome.payload, dict) else None
        return "expired" if code == "deadline_exceeded" else "error"
    return "success"


def _record(state, context, action_id, action_type, prune_now=True):
    """Keep what was handled (a failure to keep it never fails the action)."""
    from django.db import transaction

    from .conf import nautilus_settings
    from .models import TracedAction

    if nautilus_settings.TRACE_RETENTION <= 0:
        return
    if not transaction.get_connection().in_atomic_block and _status(state) == "success":
        _keep(_row(TracedAction, state, context, action_id, action_type))  # a read: saved with others
    else:
        try:
            with transaction.atomic():  # a savepoint when inside a transaction: a failure here spoils nothing
                _create(TracedAction, state, context, action_id, action_type)
        except Exception:
            logger.warning("%s could not record the handling of %s for tracing", state.service.name, action_id,
                           exc_info=True)
    if prune_now:
        _prune_quietly(state.service)


# The records of reads answered, kept in memory and saved together (a read commits nothing of its
# own: a record is not worth a commit per read). Saved when there are SAVE_AT of them or the oldest
# is SAVE_EVERY seconds old (at the next record), with a batch's transaction, before a trace query
# is answered, at each heartbeat and when the worker stops; a crash loses those not saved yet.
_kept = []
SAVE_AT = 200
SAVE_EVERY = 1.0


def _keep(row):
    _kept.append(row)
    if len(_kept) >= SAVE_AT or time.monotonic() - _kept[0].kept_at >= SAVE_EVERY:
        save_kept()


def save_kept():
    """Save the records of reads kept in memory (in the current transaction, if there is one)."""
    from django.db import transaction

    from .models import TracedAction

    if not _kept:
        return
    rows, _kept[:] = list(_kept), []
    try:
        with transaction.atomic():
            TracedAction.objects.bulk_create(rows)
    except Exception:
        logger.warning("could not save %d trace records of reads", len(rows), exc_info=True)


def _prune_quietly(service):
    from django.db import transaction

    if time.monotonic() - _last_pruned[0] < PRUNE_EVERY:  # the common case: no savepoint for nothing
        return
    if transaction.get_connection().needs_rollback:  # a batch's transaction, being undone (nautilus_core.batch)
        return
    try:
        with transaction.atomic():  # a savepoint inside a batch's transaction
            prune()
    except Exception:
        logger.warning("%s could not prune its trace records", service.name, exc_info=True)


def _create(model, state, context, action_id, action_type):
    _row(model, state, context, action_id, action_type).save(force_insert=True)


def _row(model, state, context, action_id, action_type):
    raw, outcome = state.raw, state.outcome
    row = model(
        service=state.service.name, action_id=action_id, action_type=action_type[:300],
        trace_id=context.trace_id, caused_by=read_caused_by(raw.get("caused_by")) or "",
        correlation_id=(_text(raw, "correlation_id") or "")[:255], sender=(_text(raw, "sender") or "")[:255],
        sent_at=(_text(raw, "sent_at", 64) or ""), received_at=state.received_at,
        duration=(time.monotonic() - state.started) * 1000.0, status=_status(state), attempt=state.attempt,
        outcome_id=outcome.action_id if outcome is not None else "",
        outcome_type=outcome.action_type[:300] if outcome is not None else "",
        published=state.published,
    )
    row.kept_at = time.monotonic()
    return row


_last_pruned = [0.0]


def prune(force=False):
    """Delete the records older than ``NAUTILUS_TRACE_RETENTION`` (at most once a minute per process)."""
    from .conf import nautilus_settings
    from .models import TracedAction

    now = time.monotonic()
    if not force and now - _last_pruned[0] < PRUNE_EVERY:
        return 0
    _last_pruned[0] = now
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=nautilus_settings.TRACE_RETENTION)
    deleted, _ = TracedAction.objects.filter(received_at__lt=cutoff).delete()
    return deleted


# -- the trace query every service answers -------------------------------------------------------


def answer(service, action):
    """``trace.service.pending`` ``{"id"}`` (an action, trace or correlation id) or ``{"trace_ids"}`` →
    ``{"service", "records"}``: what this service recorded of it."""
    from django.db.models import Q

    from .actions import MalformedAction
    from .models import TracedAction

    save_kept()  # what it answered lately, too
    payload = action.payload
    wanted, trace_ids = payload.get("id"), payload.get("trace_ids")
    if wanted is not None and not (isinstance(wanted, str) and 0 < len(wanted) <= 255):
        raise MalformedAction('a trace query names {"id": "<action, trace or correlation id>"}', action.to_dict())
    if trace_ids is not None and not (isinstance(trace_ids, list) and len(trace_ids) <= 100
                                      and all(isinstance(t, str) and len(t) == 32 for t in trace_ids)):
        raise MalformedAction('"trace_ids" is a list of at most 100 trace ids', action.to_dict())
    match = Q(pk__in=[])
    if wanted:
        match |= Q(action_id=wanted) | Q(trace_id=wanted.lower()) | Q(correlation_id=wanted)
    if trace_ids:
        match |= Q(trace_id__in=trace_ids)
    rows = TracedAction.objects.filter(match).order_by("received_at")[:RECORDS_PER_ANSWER]
    return {"service": service.name, "records": [row.as_record() for row in rows]}


# -- HTTP requests ------------------------------------------------------------------------------


@contextlib.contextmanager
def request_trace(traceparent_header, name="HTTP request"):
    """Serve an HTTP request in a trace: the client's (a valid ``traceparent`` header), else a new one.

    With OpenTelemetry, the request's span (Django's instrumentation's, or ``name`` when Django's
    middleware did not run) continues the same header, and is the parent of what the request sends.
    """
    traceparent = read_traceparent(traceparent_header)
    with otel.request_span(name, traceparent) as span_context:
        context = TraceContext(*span_context) if span_context is not None else _continued(traceparent)
        token = _current.set(context)
        try:
            yield context
        finally:
            _current.reset(token)


class TraceMiddleware:
    """Every HTTP request of a service runs in a trace (see ``request_trace``); the response says
    which in a ``traceresponse`` header (W3C Trace Context level 2)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        with request_trace(request.headers.get("traceparent"), _name(request)) as context:
            response = self.get_response(request)
        response["traceresponse"] = context.traceparent
        return response

    async def _acall(self, request):
        with request_trace(request.headers.get("traceparent"), _name(request)) as context:
            response = await self.get_response(request)
        response["traceresponse"] = context.traceparent
        return response


def _name(request):
    return f"{request.method} {request.path}"
