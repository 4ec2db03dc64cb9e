"""The original library's action handlers and HTTP endpoints, in nautilus's terms.

An ``action_handler`` (a class attribute or ``Service(action_handler=…)``) is the
original's one function for the actions a service receives::

    def action_handler(service, action_type, payload, props):   # or ``async def``
        if action_type == "greet.person.pending":
            return {"greeting": f"hello {payload['name']}"}      # → greet.person.success

It returns the ``.success`` payload (a dict) or None (no answer), and raises
``nautilus.ActionError`` for an ``.error`` answer; the original sent replies itself.
``props`` holds ``correlation_id``, ``action_id``, ``sender`` and ``action`` (the Action).
A handler that declares ``action_types`` (``crud_handler`` does) gets those; one without
gets every action on the bus, as in the original: its queue is bound to ``#``. It runs
like an ``@on_action`` method: recorded, so a redelivered action has no second effect
(``action_types`` may map a type to False for handlers that change nothing, like reads).
"""
import inspect

from asgiref.sync import async_to_sync

from .exceptions import ServiceMisconfigured

__all__ = ["with_action_handler", "http_view", "ActionHandlers"]


class ActionHandlers(dict):
    """``{action_type: handler}`` whose ``fallback`` handles every other type."""

    def __init__(self, handlers, fallback):
        super().__init__(handlers)
        self.fallback = fallback

    def get(self, action_type, default=None):
        return super().get(action_type) or self.fallback or default

    def __missing__(self, action_type):
        return self.fallback


def _function_of(service):
    """The service's action_handler as a plain function (not bound), or None."""
    handler = inspect.getattr_static(service, "action_handler", None)
    if isinstance(handler, (staticmethod, classmethod)):
        handler = handler.__func__
    if handler is None:
        return None
    if isinstance(handler, type) or not callable(handler):
        raise ServiceMisconfigured(
            f"{type(service).__name__}.action_handler is {handler!r}: the original's ActionHandler classes are gone. "
            "Give a function `(service, action_type, payload, props)`, or write `@nautilus.on_action(<type>)` "
            "methods.", check_id="nautilus.E003")
    return handler


async def _wait(awaitable):
    return await awaitable


def _adapter(service, function, record):
    def handle(action):
        props = {"correlation_id": action.correlation_id, "action_id": action.action_id, "sender": action.sender,
                 "action": action}
        call = async_to_sync(function) if inspect.iscoroutinefunction(function) else function
        result = call(service, action.action_type, action.payload, props)
        if inspect.isawaitable(result):  # a function that returns a coroutine
            result = async_to_sync(_wait)(result)
        if result is not None and not isinstance(result, dict):
            raise TypeError(f"an action_handler returns the .success payload (a dict) or None, not "
                            f"{type(result).__name__}")
        return result

    handle._nautilus_record = record
    handle.__name__ = getattr(function, "__name__", "action_handler")
    return handle


def with_action_handler(service, handlers):
    """``handlers`` plus the service's ``action_handler``: for its declared types, or for every other type."""
    function = _function_of(service)
    if function is None:
        return handlers
    declared = getattr(function, "action_types", None)
    if declared is None:
        return ActionHandlers(handlers, _adapter(service, function, record=True))
    if not isinstance(declared, dict):
        declared = dict.fromkeys(declared, True)
    for action_type, record in declared.items():
        handlers[action_type] = _adapter(service, function, record)
    return handlers


def http_view(handler):
    """A Django view from ``add_http_endpoint``'s handler: a view function or a ``django.views.View``."""
    from django.views import View

    if isinstance(handler, type) and issubclass(handler, View):
        return handler
    if isinstance(handler, type) or not callable(handler):
        raise TypeError(
            f"{handler!r} is not a Django view: the original's RequestHandler classes are gone. Give a function "
            "`def view(request)` returning an HttpResponse, or a subclass of django.views.View (with `get`, `post`…).")
    return handler
