"""OpenTelemetry, when configured: spans for HTTP requests, asks, handlers and their transactions.

A service exports spans when the standard variables say where to: ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), with the other ``OTEL_*`` variables (headers, sampler,
resource attributes, ``OTEL_SERVICE_NAME``, which defaults to the nautilus service's name) read
by the SDK itself. ``OTEL_SDK_DISABLED=true`` turns it off. Then (``configure_from_environment``,
at Django start):

- Django's instrumentation opens a span per HTTP request, continuing the client's ``traceparent``;
- Celery's opens a span per task run, continuing the envelope's ``traceparent`` (``intake.admit``
  passes it on to Celery) and one per publish;
- ``handler_span``: one per action handled, child of the sender's span (through the envelope),
  ``span``: one per ask and per handler transaction.

The envelope's ``traceparent`` is then the current span's (``nautilus_core.tracing``), so a trace
follows an action from the gateway's request through every service it reaches. Without
configuration nothing here is imported beyond the API, and every helper is a no-op.
"""
import contextlib
import logging
import os

from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["configured_by_environment", "configure_from_environment", "configure", "enabled", "span",
           "handler_span", "request_span", "current_span_ids"]

logger = logging.getLogger(__name__)

TRACER_NAME = "nautilus"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_state = {"tracer": None, "instrumented": False}
CLIENT = otel_trace.SpanKind.CLIENT


def enabled():
    """Whether this process makes spans."""
    return _state["tracer"] is not None


def configured_by_environment(environ=os.environ):
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name) for name in _ENDPOINT_VARIABLES)


def configure_from_environment(service_name):
    """At Django start: export spans over OTLP when the environment says where (else do nothing)."""
    if enabled() or not configured_by_environment():
        return False
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            logger.warning("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc; "
                           "traces are not exported")
            return False
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    configure(OTLPSpanExporter(), service_name=service_name, instrument=True)
    return True


def configure(exporter, *, service_name="nautilus", instrument=False, batch=True):
    """Make spans and send them to ``exporter`` (an SDK SpanExporter: OTLP, or an in-memory one in tests).

    ``instrument``: also turn on Django's and Celery's instrumentation (before Django builds its
    middleware). The tracer provider is the process's global one (made if there is none yet).
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = otel_trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        otel_trace.set_tracer_provider(provider)
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    _state["tracer"] = provider.get_tracer(TRACER_NAME)
    if instrument and not _state["instrumented"]:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(tracer_provider=provider)
        CeleryInstrumentor().instrument(tracer_provider=provider)
        _state["instrumented"] = True
    return provider


def disable():
    """Stop making spans (tests)."""
    _state["tracer"] = None


def span(name, kind=otel_trace.SpanKind.INTERNAL, **attributes):
    """A span of ``name`` around a block when tracing is on; a no-op context otherwise."""
    tracer = _state["tracer"]
    if tracer is None:
        return contextlib.nullcontext()
    return tracer.start_as_current_span(name, kind=kind, attributes=_attributes(attributes))


def _attributes(attributes):
    return {f"nautilus.{key}": value for key, value in attributes.items() if value is not None}


@contextlib.contextmanager
def handler_span(service, action_type, action_id, traceparent):
    """The span of a service handling an action, child of its sender's span; yields the span's
    ``(trace id, span id, flags)`` in hex, or None when tracing is off.

    The parent is the current span when it is of the envelope's trace (Celery's task span, which
    continued it), else the envelope's ``traceparent`` itself (another worker, a test's bus).
    """
    tracer = _state["tracer"]
    if tracer is None:
        yield None
        return
    parent = None  # the current span: Celery's, when it continued the envelope's traceparent
    if traceparent is not None and not _continues(otel_trace.get_current_span(), traceparent):
        parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    attributes = _attributes({"service": service, "action_type": action_type, "action_id": action_id})
    attributes.update({"messaging.system": "nautilus", "messaging.operation.type": "process"})
    if action_id:
        attributes["messaging.message.id"] = action_id
    with tracer.start_as_current_span(f"{action_type or 'action'} process", context=parent,
                                      kind=otel_trace.SpanKind.CONSUMER, attributes=attributes) as current_span:
        ids = current_span.get_span_context()
        yield f"{ids.trace_id:032x}", f"{ids.span_id:016x}", f"{int(ids.trace_flags):02x}"


@contextlib.contextmanager
def request_span(name, traceparent):
    """The span of an HTTP request that Django's instrumentation did not see (the gateway's ``/graphql``
    runs without Django's middleware chain: ``gateway.asgi``), continuing the client's ``traceparent``.
    Yields the current span's ids (None when tracing is off)."""
    tracer = _state["tracer"]
    if tracer is None or otel_trace.get_current_span().get_span_context().is_valid:
        yield current_span_ids()
        return
    parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent}) if traceparent else None
    with tracer.start_as_current_span(name, context=parent, kind=otel_trace.SpanKind.SERVER):
        yield current_span_ids()


def _continues(span, traceparent):
    """Whether ``span`` is the child of the envelope's sender span (``traceparent``'s parent id)."""
    parent = getattr(span, "parent", None)  # an SDK span's parent SpanContext
    return parent is not None and f"{parent.trace_id:032x}-{parent.span_id:016x}" == traceparent[3:52]


def current_span_ids():
    """``(trace id, span id, flags)`` of the current span when tracing is on and there is one."""
    if _state["tracer"] is None:
        return None
    ids = otel_trace.get_current_span().get_span_context()
    if not ids.is_valid:
        return None
    return f"{ids.trace_id:032x}", f"{ids.span_id:016x}", f"{int(ids.trace_flags):02x}"
