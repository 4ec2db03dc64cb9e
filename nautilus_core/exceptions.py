"""What a service's handlers raise, what a service class that cannot run raises, and what an ask raises."""
from django.core.exceptions import ImproperlyConfigured

from .actions import error_payload

__all__ = ["ActionError", "ActionFailed", "ServiceMisconfigured", "AskTimeout", "NoHandler"]


class ActionError(Exception):
    """Raised by a handler to answer its action with ``.error``; nothing it wrote is kept."""

    def __init__(self, message, code="invalid", details=None):
        super().__init__(message)
        self.payload = error_payload(message, code, details)


class ActionFailed(Exception):
    """A handler failed unexpectedly (a bug or an outage): the action may be tried again."""


class ServiceMisconfigured(ImproperlyConfigured):
    """A service class that cannot run; ``manage.py check`` reports it under ``check_id``."""

    def __init__(self, message, check_id="nautilus.E002"):
        super().__init__(message)
        self.check_id = check_id


class AskTimeout(TimeoutError):
    """Nobody answered an ask in time.

    Past its deadline the action is refused, so it was not applied, unless the asker lost its
    connection to the broker while it waited (``outcome_known`` False): then an answer may have
    been lost with it, and the action applied before its deadline.
    """

    def __init__(self, action_type, timeout, outcome_known=True):
        super().__init__(
            f"No reply to {action_type} within {timeout:g}s: is a service that handles it running?"
            + ("" if outcome_known else " (the connection to the broker was lost meanwhile: it may have been applied)")
        )
        self.action_type = action_type
        self.timeout = timeout
        self.outcome_known = outcome_known


class NoHandler(LookupError):
    """No queue is bound to an action type: nobody could answer an ask of it."""

    def __init__(self, action_type):
        super().__init__(f"no service handles {action_type}")
        self.action_type = action_type
