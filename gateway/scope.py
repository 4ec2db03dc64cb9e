"""What one gateway request has under way: the tasks asking services for it, and the rows it got.

The view opens a scope per request. Every task that asks a service on its behalf (a
resolver, or a DataLoader's batch, which runs in a task of its own but inherits the
request's context) joins it, so that when the client disconnects (Django then cancels the
view) the asks still waiting for a reply are cancelled too. The resolvers count the rows
they return, so the view knows when an answer is large enough to serialize in a thread.
"""
import asyncio
import contextlib
import contextvars
import logging

__all__ = ["RequestScope", "request_scope", "current_scope", "join_request_scope"]

logger = logging.getLogger(__name__)

_current = contextvars.ContextVar("nautilus_request_scope", default=None)


class RequestScope:
    def __init__(self):
        self.tasks = set()  # the tasks asking for this request, until they are done
        self.cancelled = 0  # how many of them ended cancelled
        self.rows = 0

    def join(self, task):
        if task not in self.tasks:
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task):
        self.tasks.discard(task)
        self.cancelled += task.cancelled()

    def cancel(self):
        """Cancel the tasks still asking (those that asyncio did not cancel with the view already)."""
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()


@contextlib.contextmanager
def request_scope():
    scope = RequestScope()
    token = _current.set(scope)
    try:
        yield scope
    except asyncio.CancelledError:  # the client went away: so do its asks
        scope.cancel()
        logger.info("a client went away: %d unanswered ask(s) cancelled", scope.cancelled + len(scope.tasks))
        raise
    finally:
        _current.reset(token)


def current_scope():
    """The scope of the request being served (None outside one: the bus's query.api.pending)."""
    return _current.get()


def join_request_scope():
    """Called by a task about to ask a service for the current request."""
    scope, task = _current.get(), asyncio.current_task()
    if scope is not None and task is not None:
        scope.join(task)
