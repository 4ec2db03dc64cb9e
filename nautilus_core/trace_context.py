"""The trace context of the code running now, and what a new envelope carries from it.

``traceparent`` (W3C Trace Context) and ``caused_by`` (the action whose handling sent it) are
set when an Action is made (the defaults of ``nautilus_core.actions.Action``), and read from
untrusted envelopes here without ever raising. ``nautilus_core.tracing`` sets the context while
an action is handled or a request served, and records what was handled.
"""
import contextvars
import secrets
from dataclasses import dataclass

from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import otel

__all__ = ["TRACEPARENT_LENGTH", "CAUSED_BY_LENGTH", "TraceContext", "current", "parse_traceparent",
           "read_traceparent", "read_caused_by", "new_traceparent", "caused_by"]

TRACEPARENT_LENGTH = 55  # "00-" + 32 + "-" + 16 + "-" + 2: what a version-00 traceparent is
_LONGEST_ACCEPTED = 512  # future versions may append fields; longer values are not even parsed
CAUSED_BY_LENGTH = 64  # an action id (nautilus_core.actions.ACTION_ID_LENGTH)
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class TraceContext:
    """The trace of the code running now: ``span_id`` is its parent id for what it sends."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    flags: str = "01"
    action_id: str | None = None  # the action being handled: what it sends is caused by it

    @property
    def traceparent(self):
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def new(cls, action_id=None):
        return cls(secrets.token_hex(16), secrets.token_hex(8), "01", action_id)


_current = contextvars.ContextVar("nautilus_trace", default=None)


def current():
    """The TraceContext of the code running now, or None."""
    return _current.get()


# -- reading untrusted values ----------------------------------------------------------------


def parse_traceparent(value):
    """``(trace_id, span_id, flags)`` of a valid W3C traceparent, or None for anything else (never raises)."""
    if not isinstance(value, str) or len(value) > _LONGEST_ACCEPTED or "\x00" in value:
        return None
    try:
        span = otel_trace.get_current_span(_PROPAGATOR.extract({"traceparent": value}))
    except Exception:  # the propagator is meant not to raise; a hostile value must not find out otherwise
        return None
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{int(context.trace_flags):02x}"


def read_traceparent(value):
    """An envelope's ``traceparent`` in its canonical form, or None when it is not a valid one."""
    parsed = parse_traceparent(value)
    return "00-{}-{}-{}".format(*parsed) if parsed else None


def read_caused_by(value):
    """An envelope's ``caused_by`` when it can be an action id, else None."""
    if isinstance(value, str) and 0 < len(value) <= CAUSED_BY_LENGTH and value.isprintable():
        return value
    return None


def _continued(traceparent, action_id=None):
    """A context in the trace of a (valid) ``traceparent``, with a span id of its own; a new trace without one."""
    if traceparent is None:
        return TraceContext.new(action_id)
    trace_id, _, flags = parse_traceparent(traceparent)
    return TraceContext(trace_id, secrets.token_hex(8), flags, action_id)


# -- what a new Action carries (the defaults of nautilus_core.actions.Action) -------------------


def new_traceparent():
    """The traceparent of an action made now: the current span's (OpenTelemetry), the current
    trace's, or a new trace's."""
    if otel.enabled():
        span_context = otel_trace.get_current_span().get_span_context()
        if span_context.is_valid:
            return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"
    context = _current.get()
    return (context or TraceContext.new()).traceparent


def caused_by():
    """The ``caused_by`` of an action made now: the id of the action being handled, if any."""
    context = _current.get()
    return context.action_id if context is not None else None
