"""The Service base class: a process that handles actions and serves its own API.

A service handles the actions its methods declare with ``@on_action``, answers each
``.pending`` action with a ``.success`` or ``.error`` outcome, announces a summary of
itself, and serves HTTP routes (``/graphql`` when it has a schema). One instance runs
per process, named by ``NAUTILUS["SERVICE"]`` in the settings (see ``get_service``).

Delivery (DESIGN.md §4): a recorded handler's changes, its answer and every envelope it
causes to be published (its outbox: the outcome broadcast and the events it emits) are
committed together and published after the commit. The message is acknowledged only
after that, so a worker that dies in between gets the action redelivered, which re-sends
the reply and the outbox (the same envelopes: receivers that record ignore a copy).
"""
import contextvars
import hashlib
import json
import logging
import os
from types import SimpleNamespace

from django.db import DataError, IntegrityError, transaction

from . import intake, observe, otel, tracing, versions
from .actions import ANNOUNCE, PENDING, ROLL_CALL, SUCCESS, ERROR, TRACE, Action, MalformedAction, status_of
from .conf import nautilus_settings
from .exceptions import ActionError, ActionFailed, ServiceMisconfigured
from .registry import get_service, normalize_name

__all__ = ["Service", "ActionError", "ActionFailed", "ServiceMisconfigured", "on_action", "get_service"]

logger = logging.getLogger(__name__)

# The events emitted by the handler running in this context (None outside a handler).
_emitted = contextvars.ContextVar("nautilus_emitted", default=None)

# Test hook (tests/test_delivery.py): when this names an existing file, the worker removes it
# and exits right after a commit, before publishing: the crash the outbox must survive.
TEST_HOOK_EXIT_AFTER_COMMIT = "NAUTILUS_TEST_HOOK_EXIT_AFTER_COMMIT"


def _test_hook_exit_after_commit():
    path = os.environ.get(TEST_HOOK_EXIT_AFTER_COMMIT)
    if path and os.path.exists(path):
        os.remove(path)
        os._exit(70)


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


class Service:
    """The base of every service in a cloud.

    Class attributes (each also a constructor argument, as in the original library):
    ``name`` (default: the class name with a lower-case first letter), ``schema`` (a graphene
    Schema served on ``/graphql``; None serves no GraphQL), ``action_handler`` (the original's
    one function for every action: see ``nautilus_core.original``), ``config`` (a class whose
    ``database_url`` sets the service's database: see ``nautilus_core.databases``).
    """

    name = None
    schema = None
    action_handler = None
    config = None
    #: ``"MAJOR.MINOR"``: minors stay compatible; a new major runs beside the old (``nautilus_core.versions``)
    api_version = versions.DEFAULT_API_VERSION
    #: ``{"field": "reason"}``: fields announced as deprecated (``@deprecated`` at the gateway)
    deprecations = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._routes = []  # each class its own: the original shared one list between all services

    def __init__(self, name=None, schema=None, action_handler=None, config=None, auth=True):
        from .databases import config_values, use_database_url

        self.name = name or type(self).name or normalize_name(type(self).__name__)
        if schema is not None:
            self.schema = schema
        if action_handler is not None:
            self.action_handler = action_handler
        self.config = SimpleNamespace(**config_values(type(self).config, config))
        if config_values(config).get("database_url") and not os.environ.get("DATABASE_URL"):
            use_database_url(self.config.database_url)  # as the class's config does at Django start
        self.auth = auth  # accepted for the original's signature, which ignored it too: the gateway authorizes
        self._endpoints = []
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

    def add_http_endpoint(self, url, request_handler):
        """Serve a Django view (function or class-based) on ``url`` for this instance only.

        Add endpoints before the service's URLs are loaded (in ``__init__``, say): the
        service's URLconf is built once per process, from ``get_service()``'s routes.
        """
        from .original import http_view

        self._endpoints.append((url.lstrip("/"), http_view(request_handler), {}))

    def get_routes(self):
        """``(path, view, config)`` for this class and its bases, bases first, then this instance's."""
        routes = []
        for klass in reversed(type(self).__mro__):
            routes.extend(klass.__dict__.get("_routes", ()))
        return [*routes, *self._endpoints]

    def get_handlers(self):
        """``{action_type: bound method}`` from the ``@on_action`` methods of the class (and its ``action_handler``)."""
        handlers = {}
        for attr in dir(type(self)):
            if attr == "action_handler":
                continue
            method = getattr(self, attr, None)
            for type_ in getattr(method, "_nautilus_actions", ()):
                handlers[type_] = method
        from .original import with_action_handler

        return with_action_handler(self, handlers)

    def get_models(self):
        """The Django models this service owns."""
        return []

    def summarize(self, **extra):
        """The summary announced to the cloud (DESIGN.md §3)."""
        summary = versions.mark_deprecations({"name": self.name, "api_version": self.api_version, **extra},
                                             self.deprecations)
        summary["version"] = hashlib.sha1(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:12]
        # issue 7: where its HTTP API answers, for the gateway's index (not part of the version)
        if nautilus_settings.PUBLIC_URL:
            summary["url"] = nautilus_settings.PUBLIC_URL
        if nautilus_settings.HEARTBEAT > 0:  # how often it announces: the gateway notices silence (not in the version)
            summary["heartbeat"] = nautilus_settings.HEARTBEAT
        return summary

    # -- running ---------------------------------------------------------------------

    @property
    def bus(self):
        if self._bus is None:
            from .celery import app
            from .bus import Bus

            self._bus = Bus.from_settings(app, sender=self.name)
        return self._bus

    def queue(self):
        from .bus import service_queue

        # an action_handler for every action (the original's) binds every routing key
        keys = ["#"] if getattr(self.handlers, "fallback", None) else self.handlers
        major = self.api_major()  # a major of its own: a queue of its own, its requests' keys versioned
        return service_queue(versions.queue_name(self.name, major), [versions.routing_key(k, major) for k in keys],
                             nautilus_settings.EXCHANGE,
                             queue_type=nautilus_settings.QUEUE_TYPE, delivery_limit=nautilus_settings.DELIVERY_LIMIT,
                             dead_letter_queue=nautilus_settings.DEAD_LETTER_QUEUE)

    def api_major(self):
        """The major of ``api_version`` (ValueError when it is not "MAJOR.MINOR")."""
        return versions.parse_api_version(self.api_version)[0]

    def announce(self):
        """Tell the cloud this service exists, and what it offers."""
        self.bus.publish(ANNOUNCE, self.summarize())

    @on_action(ROLL_CALL, record=False)
    def answer_roll_call(self, action):
        self.announce()

    @on_action(TRACE, record=False)
    def answer_trace(self, action):
        """What this service recorded of a trace (``manage.py trace``: ``nautilus_core.tracing``)."""
        return tracing.answer(self, action)

    def heartbeat(self):
        """Every ``NAUTILUS["HEARTBEAT"]`` seconds in the worker: announce again (the gateway notices
        silence), publish what the outbox of changes made outside actions still holds, and save the
        trace records of reads kept in memory."""
        self.announce()
        self.publish_outbox()
        tracing.save_kept()

    def emit(self, action_type, payload=None):
        """Publish an event caused by the action being handled; return the Action.

        Inside a recorded handler the event joins the action's outbox: it is committed with
        the handler's changes, published after the commit, and dropped if the handler fails.
        Outside a handler it is published at once.
        """
        event = Action(action_type=action_type, payload=payload if payload is not None else {}, sender=self.name)
        emitted = _emitted.get()
        if emitted is None:
            self.bus.publish(event)
        else:
            emitted.append(event)
        return event

    def announce_change(self, action_type, payload):
        """Announce a change made outside any action (an ORM save or delete) through the outbox.

        The outcome envelope is written in the change's transaction and published once it
        commits; a crash in between leaves it for ``publish_outbox``. Inside a handler this
        does nothing: the action's own outcome announces the change.
        """
        from .models import OutboxEnvelope

        if _emitted.get() is not None:
            return None
        event = Action(action_type=action_type, payload=payload, sender=self.name)
        entry = OutboxEnvelope.objects.create(service=self.name, envelope=event.to_dict())
        transaction.on_commit(lambda: self._publish_outbox_entries([entry]), robust=True)
        return event

    def publish_outbox(self, older_than=5.0):
        """Publish what ``announce_change`` committed but could not publish (a crash, the bus away).

        Entries younger than ``older_than`` seconds are left to the process that wrote them. A copy
        published twice is the same envelope (same action id): receivers that record ignore it.
        """
        from datetime import timedelta

        from django.utils import timezone

        from .models import OutboxEnvelope

        cutoff = timezone.now() - timedelta(seconds=older_than)
        self._publish_outbox_entries(
            OutboxEnvelope.objects.filter(service=self.name, created_at__lt=cutoff).order_by("pk")[:1000])

    def _publish_outbox_entries(self, entries):
        from .models import OutboxEnvelope

        for entry in entries:  # in commit order: listeners see changes in the order they were made
            self.bus.publish(Action.from_dict(entry.envelope))
            OutboxEnvelope.objects.filter(pk=entry.pk).delete()

    def init_db(self):
        """Create or update this service's tables (Django migrations)."""
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)

    def asgi_handler(self):
        """The ASGI application serving this service's HTTP API (``runservice`` runs it on uvicorn)."""
        from .handlers import ServiceASGIHandler

        return ServiceASGIHandler()

    def run(self, host="127.0.0.1", port=8000, shutdown_timeout=15.0, **options):
        """Serve HTTP and consume actions until stopped (``manage.py runservice``).

        ``shutdown_timeout``: seconds the HTTP server and the worker have to finish what they
        are doing once asked to stop, before they are stopped anyway.
        """
        from .runner import run_service

        run_service(self, host=host, port=port, shutdown_timeout=shutdown_timeout, **options)

    def cleanup(self):
        """Called when the service stops, however it stops."""
        tracing.save_kept()
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    # -- handling actions ------------------------------------------------------------

    def receive(self, raw, *, reply_to=None, routing_key=None, final=True, attempt=1):
        """Handle one envelope from the bus.

        A bad message cannot stop the service: ``nautilus_core.intake`` dead-letters it with the
        layer and the reason. A handler's data the database refuses is an ``.error`` answer
        (``invalid_data``), never retried. When a handler fails unexpectedly and this is not the
        ``final`` attempt, ActionFailed is raised for the caller to try again later; on the final
        attempt the action is dead-lettered and an asker gets one ``.error`` reply. Never raises
        when ``final``.
        """
        with tracing.handling(self, raw, attempt=attempt, final=final):  # its trace, span and record
            try:
                action, handler = intake.read_action(raw, self)
                self.deliver(*self._perform(handler, action), reply_to)
            except MalformedAction as exc:  # the envelope, or the handler found the payload unusable
                intake.refuse(self, exc, raw=raw, reply_to=reply_to, routing_key=routing_key)
            except Exception as exc:  # a bug or an outage
                if not final:
                    raise ActionFailed(f"{type(exc).__name__}: {exc}") from exc
                intake.give_up(self, raw, exc, reply_to=reply_to, routing_key=routing_key, attempts=attempt,
                               broadcast=handler._nautilus_record)

    def perform(self, handler, action):
        """Run a handler; return its outcome Action (None when there is nothing to answer).

        A recorded handler's outbox is committed but not published: ``receive`` publishes it.
        """
        return self._perform(handler, action)[0]

    def _perform(self, handler, action):
        """Run a handler; return ``(outcome, envelopes to publish)``."""
        if not handler._nautilus_record:
            try:
                return self._outcome(handler, action)
            except ActionError as exc:
                return self._refusal(action, exc), []
        from .models import HandledAction

        try:
            try:
                with otel.span(f"{action.action_type} transaction", service=self.name), transaction.atomic():
                    outcome, outbox = self.apply(handler, action)
            except ActionError as exc:
                # the transaction undid what the handler wrote (no savepoint on the common path);
                # the refusal is recorded on its own, so a redelivery gets the same answer
                outcome = self._refusal(action, exc)
                outbox = [outcome] if outcome is not None else []
                try:
                    with transaction.atomic():
                        HandledAction.record(self.name, action, outcome, outbox)
                        tracing.record_with_action(outcome, outbox)
                except DataError as refused:  # the refusal echoes what the database cannot hold (a NUL)
                    outcome = self._refusal(action, _invalid_data(refused))
                    outbox = [outcome] if outcome is not None else []
                    with transaction.atomic():
                        HandledAction.record(self.name, action, outcome, outbox)
        except IntegrityError:
            # Recorded already (a redelivery, or another replica got it too): the unique constraint
            # undid this run. Same answer, no second effect, and the outbox goes out again.
            done = HandledAction.objects.filter(service=self.name, action_id=action.action_id).first()
            if done is None:
                raise  # the handler's own integrity error: an unexpected failure
            logger.info("%s already handled %s (%s): answered again", self.name, action.action_type, action.action_id)
            return done.outcome_for(action), done.outbox_actions()
        _test_hook_exit_after_commit()
        return outcome, outbox

    def apply(self, handler, action):
        """Inside a transaction: run a recorded handler and record the action with its answer and
        outbox; return ``(outcome, outbox)``. Raises what the handler raises, and IntegrityError when
        the action was recorded before (``nautilus_core.batch`` applies many in one transaction)."""
        from .models import HandledAction

        outcome, outbox = self.run_handler(handler, action)
        try:
            HandledAction.record(self.name, action, outcome, outbox)
        except DataError as exc:  # the answer or the outbox holds what the database refuses
            raise _invalid_data(exc) from exc
        tracing.record_with_action(outcome, outbox)
        return outcome, outbox

    def run_handler(self, handler, action):
        """Run a recorded handler, not recording it: ``(outcome, outbox)`` (``apply`` records it)."""
        outcome, emitted = self._outcome(handler, action)
        # the outcome is broadcast first, so listeners see a change before its consequences
        return outcome, [outcome, *emitted] if outcome is not None else emitted

    def _outcome(self, handler, action):
        """Run the handler; return ``(outcome or None, the events it emitted)``. ActionError propagates."""
        self._within_deadline(action)
        emitted = []
        token = _emitted.set(emitted)
        try:
            payload = handler(action)
        except (DataError, IntegrityError) as exc:  # the handler's own write: trying again cannot help
            raise _invalid_data(exc) from exc
        finally:
            _emitted.reset(token)
        self._within_deadline(action)  # again before the commit: the asker stops waiting at the deadline
        if payload is None or status_of(action.action_type) != PENDING:
            return None, emitted
        return action.outcome(SUCCESS, payload, self.name), emitted

    def _within_deadline(self, action):
        """Refuse an action past its deadline: its asker was told it timed out and may retry it.

        Raised as an ActionError, so the refusal is recorded like any other (a redelivery is
        answered ``deadline_exceeded`` too), unless the action was applied before: then the
        record's answer stands.
        """
        if action.expired():
            logger.info("%s refused %s (%s): past its deadline %s", self.name, action.action_type,
                        action.action_id, action.deadline)
            raise ActionError(f"{action.action_type} arrived after its deadline ({action.deadline}); "
                              "it was not applied", "deadline_exceeded", {"deadline": action.deadline})

    def _refusal(self, action, exc):
        """The ``.error`` answer to an ActionError (events only get none)."""
        return action.outcome(ERROR, exc.payload, self.name) if status_of(action.action_type) == PENDING else None

    def deliver(self, outcome, outbox, reply_to, producer=None):
        """After the commit: answer the asker and publish the outbox (then the message is acked).

        ``producer``: publish with it (``nautilus_core.batch`` publishes a batch in one round of confirms).
        """
        tracing.note_outcome(outcome, outbox)
        observe.answered(outcome)
        if reply_to and outcome is not None and outcome.correlation_id:
            self.bus.reply(reply_to, outcome, producer=producer)
        for envelope in outbox:
            self.bus.publish(envelope, producer=producer)

    def respond(self, outcome, reply_to=None, *, broadcast=True):
        """Send an outcome to the asker and, for changes, to everyone who listens."""
        if reply_to and outcome.correlation_id:
            self.bus.reply(reply_to, outcome)
        if broadcast:
            self.bus.publish(outcome)


def _invalid_data(exc):
    """A write the database refused for its data (a NUL character on PostgreSQL, a value too long or
    out of range, a violated constraint): an ``.error`` answer, since trying again cannot help."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ActionError(f"the database refused the data: {reason}", "invalid_data", {"error": type(exc).__name__})
