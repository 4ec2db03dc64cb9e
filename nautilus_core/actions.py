"""Actions: the messages services exchange, and the one place their types are built.

An action type is ``<method>.<name>.<status>`` (``create.recipe.pending``), plus the
three cloud-wide types ``init.service.pending`` (an announcement), ``roll_call`` and
``query.api.pending``. Senders and receivers import these helpers instead of
spelling types as strings, so a typo cannot create a queue nobody publishes to.

An action travels as an *envelope*, a JSON object (DESIGN.md §3)::

    {"action_type": str, "payload": object, "action_id": uuid, "correlation_id": uuid | null,
     "sender": str, "sent_at": ISO-8601, "deadline": ISO-8601 (optional), "api_major": int (optional),
     "traceparent": W3C traceparent (optional), "caused_by": action id (optional)}

An ask carries a ``deadline``: past it, a service refuses the action (``deadline_exceeded``)
instead of applying it, and records the refusal, so an asker that gave up can retry safely.
Every new action carries the current trace (``traceparent``) and the id of the action being
handled (``caused_by``): see ``nautilus_core.tracing``.
"""
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import trace_context

__all__ = [
    "PENDING", "SUCCESS", "ERROR", "CRUD_METHODS",
    "ANNOUNCE", "ROLL_CALL", "QUERY", "TRACE",
    "action_type", "crud_action", "with_status", "status_of", "name_of",
    "Action", "MalformedAction", "error_payload", "ACTION_ID_LENGTH", "deadline_in", "seconds_left",
]

PENDING, SUCCESS, ERROR = "pending", "success", "error"
STATUSES = (PENDING, SUCCESS, ERROR)
CRUD_METHODS = ("create", "read", "update", "delete")


def action_type(method, name, status=PENDING):
    """``action_type("create", "recipe")`` → ``"create.recipe.pending"``."""
    if status not in STATUSES:
        raise ValueError(f"Unknown action status {status!r}; expected one of {STATUSES}")
    return f"{method}.{name}.{status}"


def crud_action(method, name, status=PENDING):
    if method not in CRUD_METHODS:
        raise ValueError(f"Unknown CRUD method {method!r}; expected one of {CRUD_METHODS}")
    return action_type(method, name, status)


def with_status(type_, status):
    """``with_status("create.recipe.pending", "success")`` → ``"create.recipe.success"``."""
    method, name, _ = _split(type_)
    return action_type(method, name, status)


def status_of(type_):
    parts = type_.split(".")
    return parts[-1] if len(parts) == 3 else None


def name_of(type_):
    """The service name inside an action type, or None for cloud-wide types."""
    parts = type_.split(".")
    return parts[1] if len(parts) == 3 else None


def _split(type_):
    parts = type_.split(".")
    if len(parts) != 3:
        raise ValueError(f"{type_!r} is not of the form <method>.<name>.<status>")
    return parts


ANNOUNCE = action_type("init", "service")
ROLL_CALL = "roll_call"
QUERY = action_type("query", "api")
TRACE = action_type("trace", "service")  # every service answers what it recorded of a trace (manage.py trace)


class MalformedAction(ValueError):
    """A message that cannot be handled as an action, with the reason why and the layer at fault.

    ``layer`` is one of ``nautilus_core.intake.LAYERS``; a handler that raises it finds the payload
    unusable (the default).
    """

    def __init__(self, reason, raw=None, layer="payload"):
        super().__init__(reason)
        self.raw = raw
        self.layer = layer

    @property
    def action_type(self):
        """The action type the sender meant, when the envelope names a usable one."""
        if isinstance(self.raw, dict) and isinstance(self.raw.get("action_type"), str):
            return self.raw["action_type"]
        return None

    @property
    def correlation_id(self):
        if isinstance(self.raw, dict) and isinstance(self.raw.get("correlation_id"), str):
            return self.raw["correlation_id"]
        return None


# What the envelope's strings may be: what every service's HandledAction columns and an AMQP
# routing key or property (255 bytes) can hold.
ACTION_ID_LENGTH = 64
_TEXT_LIMITS = {"action_type": 255, "action_id": ACTION_ID_LENGTH, "correlation_id": 255, "sender": 255,
                "sent_at": 64, "deadline": 64}


def _check_text(raw, key):
    value = raw[key]
    if not isinstance(value, str):
        raise MalformedAction(f"the envelope's {key} must be a string", raw, layer="envelope")
    if "\x00" in value:
        raise MalformedAction(f"the envelope's {key} contains a NUL character", raw, layer="envelope")
    try:
        size = len(value.encode("utf-8")) if key in ("action_type", "correlation_id") else len(value)
    except UnicodeEncodeError:
        raise MalformedAction(f"the envelope's {key} is not Unicode text", raw, layer="envelope") from None
    if size > _TEXT_LIMITS[key]:
        raise MalformedAction(f"the envelope's {key} is longer than {_TEXT_LIMITS[key]} "
                              f"{'bytes' if key in ('action_type', 'correlation_id') else 'characters'}",
                              raw, layer="envelope")


def _now():
    return datetime.now(timezone.utc).isoformat()


def deadline_in(seconds):
    """The deadline ``seconds`` from now, as the envelope carries it (ISO-8601, UTC)."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def parse_time(text):
    """An envelope's ISO-8601 time as an aware datetime (a time without offset is UTC); None if unreadable."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def seconds_left(deadline):
    """Seconds from now until ``deadline`` (negative once it passed)."""
    return (parse_time(deadline) - datetime.now(timezone.utc)).total_seconds()


def _new_id():
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Action:
    action_type: str
    payload: dict = field(default_factory=dict)
    action_id: str = field(default_factory=_new_id)
    correlation_id: str | None = None
    sender: str = ""
    sent_at: str = field(default_factory=_now)
    deadline: str | None = None  # past it the action must not be applied; only asks carry one
    traceparent: str | None = field(default_factory=trace_context.new_traceparent)  # W3C trace context
    caused_by: str | None = field(default_factory=trace_context.caused_by)  # the action whose handling sent it
    api_major: int | None = None  # the API major a request is meant for (nautilus_core.versions); None: 1

    def to_dict(self):
        envelope = {
            "action_type": self.action_type,
            "payload": self.payload,
            "action_id": self.action_id,
            "correlation_id": self.correlation_id,
            "sender": self.sender,
            "sent_at": self.sent_at,
        }
        if self.deadline is not None:  # optional: peers that do not know it never see it
            envelope["deadline"] = self.deadline
        if self.traceparent is not None:
            envelope["traceparent"] = self.traceparent
        if self.caused_by is not None:
            envelope["caused_by"] = self.caused_by
        if self.api_major not in (None, 1):  # major 1 is the format of before versions
            envelope["api_major"] = self.api_major
        return envelope

    def expired(self):
        """Whether the action's deadline has passed (never, without one)."""
        return self.deadline is not None and seconds_left(self.deadline) < 0

    @classmethod
    def from_dict(cls, raw):
        """Validate an envelope received from the bus; raise MalformedAction with the reason."""
        if not isinstance(raw, dict):
            raise MalformedAction(f"the envelope must be a JSON object, not {type(raw).__name__}", raw,
                                  layer="envelope")
        type_ = raw.get("action_type")
        if not isinstance(type_, str) or not type_:
            raise MalformedAction("the envelope has no action_type", raw, layer="envelope")
        for key in ("action_type", "action_id", "correlation_id", "sender", "sent_at", "deadline"):
            if raw.get(key) is not None:
                _check_text(raw, key)
        payload = raw.get("payload", {})
        if not isinstance(payload, dict):
            raise MalformedAction(
                f"the payload of {type_} must be a JSON object, not {type(payload).__name__}", raw
            )
        if raw.get("deadline") is not None and parse_time(raw["deadline"]) is None:
            raise MalformedAction("the envelope's deadline must be an ISO-8601 time", raw, layer="envelope")
        major = raw.get("api_major")
        if major is not None and (isinstance(major, bool) or not isinstance(major, int) or not 1 <= major <= 999):
            raise MalformedAction("the envelope's api_major must be a whole number from 1 to 999", raw,
                                  layer="envelope")
        return cls(
            action_type=type_,
            payload=payload,
            action_id=raw.get("action_id") or _new_id(),
            correlation_id=raw.get("correlation_id"),
            sender=raw.get("sender") or "",
            sent_at=raw.get("sent_at") or _now(),
            deadline=raw.get("deadline"),
            # trace context is never a reason to refuse: an invalid value is dropped (a new trace then)
            traceparent=trace_context.read_traceparent(raw.get("traceparent")),
            caused_by=trace_context.read_caused_by(raw.get("caused_by")),
            api_major=major,
        )

    def outcome(self, status, payload, sender):
        """The ``.success``/``.error`` action answering this one (same correlation id)."""
        return Action(
            action_type=with_status(self.action_type, status),
            payload=payload,
            correlation_id=self.correlation_id,
            sender=sender,
        )


def error_payload(message, code, details=None):
    """The ``.error`` payload shape: ``{"message", "code", "details"}``."""
    return {"message": message, "code": code, "details": details or {}}
