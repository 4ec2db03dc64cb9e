"""The Service base class: a process that handles actions and serves its own API.

A service handles the actions its methods declare with ``@on_action``, answers each
``.pending`` action with a ``.success`` or ``.error`` outcome, announces a summary of
itself, and serves HTTP routes (``/graphql`` when it has a schema). One instance runs
per process, named by ``NAUTILUS["SERVICE"]`` in the settings (see ``get_service``).
"""
import functools
import hashlib
import json
import logging

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from .actions import ANNOUNCE, PENDING, ROLL_CALL, SUCCESS, ERROR, Action, MalformedAction, error_payload, status_of
from .conf import nautilus_settings

__all__ = ["Service", "ActionError", "ServiceMisconfigured", "on_action", "get_service"]

logger = logging.getLogger(__name__)


class ActionError(Exception):
    """Raised by a handler to answer its action with ``.error``; nothing it wrote is kept."""

    def __init__(self, message, code="invalid", details=None):
        super().__init__(message)
        self.payload = error_payload(message, code, details)


class ServiceMisconfigured(ImproperlyConfigured):
    """A service class that cannot run; ``manage.py check`` reports it under ``check_id``."""

    def __init__(self, message, check_id="nautilus.E002"):
        super().__init__(message)
        self.check_id = check_id


def on_action(*action_types, record=True):
    """Mark a service method as the handler of these action types.

    The method takes the Action and returns the ``.success`` payload (a dict), or None
    when the action needs no answer; it raises ActionError for an ``.error`` answer.
    With ``record`` (the default) the handler runs in a transaction that also records
    the action id, so a redelivered action is answered again without a second effect;
    pass ``record=False`` for handlers that change nothing (reads). Without action types
    it only marks the method; ``get_handlers`` then maps it (as ModelService does).
    """
    def mark(method):
        method._nautilus_actions = action_types
        method._nautilus_record = record
        return method

    return mark


def normalize_name(name):
    """``RecipeService`` → ``recipeService``: the original's default service name."""
    return name[:1].lower() + name[1:]


class Service:
    """The base of every service in a cloud.

    Class attributes: ``name`` (default: the class name with a lower-case first letter),
    ``schema`` (a graphene Schema served on ``/graphql``; None serves no GraphQL).
    """

    name = None
    schema = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._routes = []  # each class its own: the original shared one list between all services

    def __init__(self, name=None, schema=None):
        self.name = name or type(self).name or normalize_name(type(self).__name__)
        if schema is not None:
            self.schema = schema
        self.handlers = self.get_handlers()
        self._bus = None

    # -- declaration -----------------------------------------------------------------

    @classmethod
    def route(cls, route, config=None):
        """Decorate a Django view (function or class-based) to serve ``route`` on this service."""
        def register(view):
            cls._routes.append((route.lstrip("/"), view, config or {}))
            return view

        return register

    def get_routes(self):
        """``(path, view, config)`` for this class and its bases, bases first."""
        routes = []
        for klass in reversed(type(self).__mro__):
            routes.extend(klass.__dict__.get("_routes", ()))
        return routes

    def get_handlers(self):
        """``{action_type: bound method}`` from the ``@on_action`` methods of the class."""
        handlers = {}
        for attr in dir(type(self)):
            method = getattr(self, attr, None)
            for type_ in getattr(method, "_nautilus_actions", ()):
                handlers[type_] = method
        return handlers

    def get_models(self):
        """The Django models this service owns."""
        return []

    def summarize(self, **extra):
        """The summary announced to the cloud (DESIGN.md §3)."""
        summary = {"name": self.name, **extra}
        summary["version"] = hashlib.sha1(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:12]
        return summary

    # -- running ---------------------------------------------------------------------

    @property
    def bus(self):
        if self._bus is None:
            from .celery import app
            from .bus import Bus

            self._bus = Bus(
                app, sender=self.name,
                exchange=nautilus_settings.EXCHANGE,
                dead_letter_queue=nautilus_settings.DEAD_LETTER_QUEUE,
            )
        return self._bus

    def queue(self):
        from .bus import service_queue

        return service_queue(self.name, self.handlers, nautilus_settings.EXCHANGE)

    def announce(self):
        """Tell the cloud this service exists, and what it offers."""
        self.bus.publish(ANNOUNCE, self.summarize())

    @on_action(ROLL_CALL, record=False)
    def answer_roll_call(self, action):
        self.announce()

    def init_db(self):
        """Create or update this service's tables (Django migrations)."""
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)

    def run(self, host="127.0.0.1", port=8000, **options):
        """Serve HTTP and consume actions until stopped (``manage.py runservice``)."""
        from .runner import run_service

        run_service(self, host=host, port=port, **options)

    def cleanup(self):
        """Called when the service stops, however it stops."""
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    # -- handling actions ------------------------------------------------------------

    def receive(self, raw, *, reply_to=None, routing_key=None):
        """Handle one envelope from the bus. Never raises: a bad message cannot stop the service."""
        try:
            action = Action.from_dict(raw)
            handler = self.handlers.get(action.action_type)
            if handler is None:
                raise MalformedAction(f"service {self.name!r} does not handle {action.action_type}", raw)
        except MalformedAction as exc:
            self._refuse(raw, exc, reply_to, routing_key)
            return
        try:
            outcome = self.perform(handler, action)
        except Exception as exc:  # a bug or an outage: keep the message, answer, go on
            logger.exception("%s failed on %s", self.name, action.action_type)
            self.bus.dead_letter(raw, f"{type(exc).__name__}: {exc}", service=self.name, routing_key=routing_key)
            outcome = action.outcome(ERROR, error_payload(
                f"{self.name} could not handle {action.action_type}; the action was kept for replay",
                "internal_error"), self.name) if status_of(action.action_type) == PENDING else None
        if outcome is not None:
            self.respond(outcome, reply_to, broadcast=handler._nautilus_record)

    def perform(self, handler, action):
        """Run a handler; return its outcome Action (None when there is nothing to answer)."""
        if not handler._nautilus_record:
            return self._outcome(handler, action)
        from .models import HandledAction

        try:
            with transaction.atomic():
                done = HandledAction.objects.filter(service=self.name, action_id=action.action_id).first()
                if done is not None:  # redelivered: same answer, no second effect
                    return done.outcome_for(action)
                outcome = self._outcome(handler, action)
                HandledAction.record(self.name, action, outcome)
                return outcome
        except IntegrityError:
            # another replica recorded the same action id concurrently: answer as it did
            return HandledAction.objects.get(service=self.name, action_id=action.action_id).outcome_for(action)

    def _outcome(self, handler, action):
        pending = status_of(action.action_type) == PENDING
        try:
            if handler._nautilus_record:
                with transaction.atomic():  # an error undoes what the handler wrote
                    payload = handler(action)
            else:
                payload = handler(action)
        except ActionError as exc:
            return action.outcome(ERROR, exc.payload, self.name) if pending else None
        if payload is None or not pending:
            return None
        return action.outcome(SUCCESS, payload, self.name)

    def respond(self, outcome, reply_to=None, *, broadcast=True):
        """Send an outcome to the asker and, for changes, to everyone who listens."""
        if reply_to and outcome.correlation_id:
            self.bus.reply(reply_to, outcome)
        if broadcast:
            self.bus.publish(outcome)

    def _refuse(self, raw, exc, reply_to, routing_key):
        self.bus.dead_letter(raw, str(exc), service=self.name, routing_key=routing_key)
        type_ = exc.action_type or routing_key
        if reply_to and exc.correlation_id and type_ and status_of(type_) == PENDING:
            self.bus.reply(reply_to, Action(
                action_type=type_, correlation_id=exc.correlation_id, sender=self.name,
            ).outcome(ERROR, error_payload(str(exc), "malformed_action"), self.name))


@functools.cache
def get_service():
    """The Service this process runs, from ``NAUTILUS["SERVICE"]`` (cached; reset with settings)."""
    path = nautilus_settings.SERVICE
    if not path:
        raise ImproperlyConfigured('Set NAUTILUS["SERVICE"] to the dotted path of your Service class.')
    return import_string(path)()
