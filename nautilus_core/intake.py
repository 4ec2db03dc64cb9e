"""Intake: what a service takes from the bus, and what it does with what it cannot take.

Every message is checked layer by layer before Celery reads it (``ActionConsumer`` calls
``admit``); the first layer that fails names the refusal:

============== ==================================================================================
layer          what must hold
============== ==================================================================================
content_type   ``application/json``, UTF-8 (or no encoding named, or ``binary``), not compressed
headers        the Celery task headers: ``task`` is ``nautilus.action`` (no other task, not even
               Celery's builtins), ``id`` a string; no Celery feature: no ``eta``, ``countdown``,
               ``expires``, ``timelimit``, ``callbacks``, ``errbacks``, ``chain``, ``chord``,
               ``group``, ``shadow``; ``retries`` only on the service's own (signed) retries
bytes          UTF-8 JSON text (no NaN or Infinity), nested at most ``MAX_DEPTH`` deep
body           ``[args, kwargs, embed]``: a list, an object, and an object of null
               ``callbacks``/``errbacks``/``chain``/``chord`` (or null)
call           ``args`` is ``[envelope]`` and ``kwargs`` is ``{}``
envelope       ``Action.from_dict`` accepts it, and this service handles its type (an invalid
               ``traceparent`` or ``caused_by`` is dropped, never refused: ``nautilus_core.tracing``)
payload        an object of JSON data (no kombu type markers, no lone surrogates); or the
               handler found it unusable (it raised ``MalformedAction``)
handler        the handler failed unexpectedly on every attempt (a bug or an outage)
============== ==================================================================================

A refused message goes to the dead-letter queue with its layer and reason, the asker gets one
``.error`` reply (code ``malformed_action``; ``internal_error`` for the handler layer) when it
left a ``reply_to`` and a correlation id, and the worker acknowledges it and goes on.
``refuse`` and ``give_up`` are the only places that decide this.

Celery sees only the headers ``admit`` returns: ``task``, ``id``, ``retries`` and ``eta``. The
last two come from the service's own retries only, recognised by a signature made with the
service's secret key (``retry_headers``): an outsider cannot make an action wait in the worker's
memory, skip its retries, or run later than the retry backoff allows.
"""
import json
import logging
import math
from datetime import datetime, timedelta, timezone

from django.core import signing
from kombu import compression

from . import tracing, versions
from .actions import ERROR, PENDING, Action, MalformedAction, error_payload, status_of, with_status

__all__ = ["LAYERS", "TASK_NAME", "MAX_DEPTH", "RETRY_BACKOFF_MAX", "admit", "read_action", "refuse", "give_up",
           "retry_headers", "refuse_compressed_bodies"]

logger = logging.getLogger(__name__)

LAYERS = ("content_type", "headers", "bytes", "body", "call", "envelope", "payload", "handler")
TASK_NAME = "nautilus.action"
# deeper JSON is refused: every recursive reader after this one (Celery, psycopg, graphene) stays far from
# Python's recursion limit
MAX_DEPTH = 100
# seconds: the longest wait between two tries of an action (the backoff doubles up to this)
RETRY_BACKOFF_MAX = 30
RETRY_HEADER = "nautilus_retry"
_RETRY_SALT = "nautilus_core.intake.retry"
# Celery features a message can ask for in its headers; none is taken from the bus
_FEATURE_HEADERS = ("eta", "countdown", "expires", "callbacks", "errbacks", "chain", "chord", "group",
                    "group_index", "shadow", "link", "link_error")
_EMBED_KEYS = frozenset({"callbacks", "errbacks", "chain", "chord"})
_KOMBU_MARKER = frozenset({"__type__", "__value__"})  # what kombu's JSON turns into datetime, bytes…


def admit(message, service):
    """Check a raw kombu message at every layer; return ``(headers for Celery, envelope, Action, handler)``.

    Raises MalformedAction with the layer and the reason of the first check that fails.
    """
    _check_content_type(message)
    headers = _check_headers(message.headers)
    body = _decode(message.body)
    envelope = _check_call(body)
    action, handler = read_action(envelope, service)
    # what Celery reads of the message: nothing else from the outside (the trace is the envelope's, checked)
    return {"task": TASK_NAME, "id": headers["id"], "retries": headers["retries"], "eta": headers["eta"],
            "argsrepr": action.action_type, "kwargsrepr": "{}", "ignore_result": True,
            "traceparent": action.traceparent}, envelope, action, handler


def read_action(raw, service):
    """The Action in an envelope and the service's handler for it; MalformedAction when there is none."""
    _check_json(raw, "envelope")
    action = Action.from_dict(raw)
    handler = service.handlers.get(action.action_type)
    if handler is None:
        raise MalformedAction(f"service {service.name!r} does not handle {action.action_type}", raw,
                              layer="envelope")
    # never one meant for another major of the service
    versions.check_major(action, service.api_major() if hasattr(service, "api_major") else 1, service.name)
    return action, handler


# -- the layers ------------------------------------------------------------------------------


def _check_content_type(message):
    if message.errors:  # kombu could not take the body as it came (see refuse_compressed_bodies)
        raise MalformedAction(f"unreadable message: {message.errors[0][1]}", layer="content_type")
    if isinstance(message.headers, dict) and message.headers.get("compression"):
        raise MalformedAction("compressed messages are not accepted", layer="content_type")
    if message.content_type != "application/json":
        raise MalformedAction(f"content type {message.content_type!r} is not accepted: JSON only "
                              "(application/json)", layer="content_type")
    # "binary": kombu's name for bytes published without an encoding; they are read as UTF-8 all the same
    if (message.content_encoding or "utf-8").lower() not in ("utf-8", "utf8", "binary"):
        raise MalformedAction(f"content encoding {message.content_encoding!r} is not accepted: UTF-8 only",
                              layer="content_type")


def _check_headers(headers):
    if not isinstance(headers, dict) or "task" not in headers:
        raise MalformedAction("not a nautilus action (no Celery task header)", layer="headers")
    task = headers["task"]
    if not isinstance(task, str):
        raise MalformedAction(f"the task header must be a string, not {type(task).__name__}", layer="headers")
    if task != TASK_NAME:
        raise MalformedAction(f"unknown task {task!r}", layer="headers")
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > 255:
        raise MalformedAction("the id header must be a string of 1 to 255 characters", layer="headers")
    if headers.get("timelimit") not in (None, [None, None], (None, None)):
        raise MalformedAction(f"timelimit is not taken from the bus: {headers['timelimit']!r}", layer="headers")
    retries = headers.get("retries") or 0
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise MalformedAction(f"retries must be a count, not {headers.get('retries')!r}", layer="headers")
    eta = headers.get("eta")
    own_retry = retries > 0 or eta is not None
    if own_retry and not _signed(headers.get(RETRY_HEADER), task_id, retries):
        raise MalformedAction("retries and eta are the service's own: this message's are not signed by it",
                              layer="headers")
    for name in _FEATURE_HEADERS:
        if headers.get(name) not in (None, [], {}) and not (name == "eta" and own_retry):
            raise MalformedAction(f"{name} is not taken from the bus: {headers[name]!r}", layer="headers")
    if eta is not None:
        _check_retry_eta(eta)
    return {"id": task_id, "retries": retries, "eta": eta}


def _check_retry_eta(eta):
    try:
        when = datetime.fromisoformat(eta) if isinstance(eta, str) else None
    except ValueError:
        when = None
    if when is None:
        raise MalformedAction(f"the eta of a retry must be an ISO-8601 time, not {eta!r}", layer="headers")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when - datetime.now(timezone.utc) > timedelta(seconds=2 * RETRY_BACKOFF_MAX):
        raise MalformedAction(f"the eta of a retry is further than the retry backoff allows: {eta}",
                              layer="headers")


def _decode(raw):
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        if not isinstance(text, str):
            raise ValueError(f"a body of type {type(raw).__name__}")
        return json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise MalformedAction(f"undecodable message: not UTF-8 ({exc})", layer="bytes") from None
    except RecursionError:
        raise MalformedAction("undecodable message: JSON nested too deeply", layer="bytes") from None
    except ValueError as exc:
        raise MalformedAction(f"undecodable message: not JSON ({exc})", layer="bytes") from None


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _check_call(body):
    if not (isinstance(body, list) and len(body) == 3):
        raise MalformedAction(f"the body must be [args, kwargs, embed], not {_kind(body)}", layer="body")
    args, kwargs, embed = body
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise MalformedAction(f"the body must be [args, kwargs, embed] with args a list and kwargs an object, "
                              f"not {_kind(args)} and {_kind(kwargs)}", layer="body")
    if embed is not None and not isinstance(embed, dict):
        raise MalformedAction(f"the body's embed must be an object, not {_kind(embed)}", layer="body")
    for key, value in (embed or {}).items():
        if key not in _EMBED_KEYS or value not in (None, []):
            raise MalformedAction(f"the body's embed asks for a Celery feature: {key}={value!r}"[:300],
                                  layer="body")
    if len(args) != 1 or kwargs:
        raise MalformedAction(f"{TASK_NAME} takes one argument, the envelope; got {len(args)} positional and "
                              f"{sorted(kwargs)[:10]}", layer="call")
    return args[0]


def _kind(value):
    return "null" if value is None else type(value).__name__


def _check_json(value, layer):
    """JSON data only: no kombu type markers, no lone surrogates, nothing nested deeper than MAX_DEPTH.

    In an envelope, a problem inside its payload is of the payload layer.
    """
    stack = [(value, 0, layer)]
    while stack:
        item, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedAction(f"JSON nested more than {MAX_DEPTH} deep", layer=where)
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise MalformedAction(f"{item} is not JSON", layer=where)
        elif isinstance(item, list):
            stack.extend((element, depth + 1, where) for element in item)
        elif isinstance(item, dict):
            if item.keys() == _KOMBU_MARKER:
                raise MalformedAction("a kombu type marker ({'__type__', '__value__'}) is not JSON data",
                                      layer=where)
            for key, element in item.items():
                _check_text(key, where)
                inner = "payload" if where == "envelope" and depth == 0 and key == "payload" else where
                stack.append((element, depth + 1, inner))


def _check_text(text, layer):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedAction("a string is not Unicode text (a lone surrogate)", layer=layer) from None


# -- the service's own retries ---------------------------------------------------------------


def retry_headers(task_id, retries):
    """The header that marks a retry as the service's own (signed with its secret key)."""
    return {RETRY_HEADER: signing.Signer(salt=_RETRY_SALT).sign(f"{task_id}:{retries}")}


def _signed(signature, task_id, retries):
    if not isinstance(signature, str):
        return False
    try:
        return signing.Signer(salt=_RETRY_SALT).unsign(signature) == f"{task_id}:{retries}"
    except signing.BadSignature:
        return False


def refuse_compressed_bodies():
    """kombu decompresses a body named compressed before anyone can look at it: a small message
    could become gigabytes. In a worker, every compression is refused instead (the message then
    carries the error, and ``admit`` refuses it)."""
    def refuse(body):
        raise ValueError("compressed messages are not accepted")

    for content_type in compression.encoders():
        encoder, _ = compression.get_encoder(content_type)
        compression.register(encoder, refuse, content_type)


# -- what is done with a message that cannot be handled -----------------------------------------


def refuse(service, exc, *, raw=None, message=None, reply_to=None, routing_key=None):
    """Dead-letter a message with the layer and the reason of ``exc`` (a MalformedAction), and give
    an asker one ``malformed_action`` reply. ``raw`` is the envelope (the envelope layer on), or
    ``message`` the kombu message (the layers before it)."""
    context = {"service": service.name, "routing_key": routing_key, "queue": service.queue().name,
               "reply_to": reply_to}
    if message is not None:
        properties = message.properties or {}
        context.update(kind="message", headers=dict(message.headers or {}), content_type=message.content_type,
                       content_encoding=message.content_encoding, reply_to=properties.get("reply_to") or None,
                       correlation_id=properties.get("correlation_id"))
        raw = _envelope_of(message)
        body = message.body
    else:
        context.update(kind="action")
        # the whole envelope when there is one (what `dead replay` sends again), not the part a handler refused
        body = raw if raw is not None else exc.raw
    service.bus.dead_letter(body, str(exc), layer=exc.layer, **context)
    tracing.note_refused(service, raw)
    correlation_id = _text(raw, "correlation_id") or (_text(context, "correlation_id") if message else None)
    _answer(service, raw, context["reply_to"], routing_key, correlation_id,
            error_payload(str(exc), "malformed_action", {"layer": exc.layer}))


def give_up(service, raw, exc, *, reply_to=None, routing_key=None, attempts=1, broadcast=True):
    """The handler failed on every attempt: dead-letter the action, and give an asker one
    ``internal_error`` reply (broadcast too when the action would have changed something)."""
    logger.error("%s failed on %s (attempt %d); dead-lettered", service.name, _text(raw, "action_type"), attempts,
                 exc_info=exc)
    service.bus.dead_letter(raw, f"{type(exc).__name__}: {exc}", layer="handler", kind="action",
                            service=service.name, routing_key=routing_key, queue=service.queue().name,
                            reply_to=reply_to, attempts=attempts)
    tracing.note_refused(service, raw)
    action = Action.from_dict(raw)
    if status_of(action.action_type) == PENDING:
        service.respond(action.outcome(ERROR, error_payload(
            f"{service.name} could not handle {action.action_type}; the action was kept for replay",
            "internal_error"), service.name), reply_to, broadcast=broadcast)


def _answer(service, raw, reply_to, routing_key, correlation_id, payload):
    type_ = _text(raw, "action_type")
    if not (type_ and status_of(type_) == PENDING and len(type_.split(".")) == 3):
        type_ = routing_key
    if not (reply_to and isinstance(reply_to, str) and correlation_id and isinstance(type_, str)
            and status_of(type_) == PENDING):
        return
    service.bus.reply(reply_to, Action(action_type=with_status(type_, ERROR), payload=payload,
                                       correlation_id=correlation_id, sender=service.name))


def _text(raw, key):
    """A short string field of a dict that may be anything, or None."""
    value = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(value, str) and 0 < len(value) <= 255 and "\x00" not in value:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return None
    return None


def _envelope_of(message):
    """The envelope of a refused message, when its body reads as far as that (for the reply)."""
    try:
        body = _decode(message.body)
    except MalformedAction:
        return None
    if isinstance(body, list) and body and isinstance(body[0], list) and len(body[0]) == 1:
        return body[0][0] if isinstance(body[0][0], dict) else None
    return None
