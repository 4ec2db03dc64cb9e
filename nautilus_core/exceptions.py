"""What a service's handlers raise, and what a service class that cannot run raises."""
from django.core.exceptions import ImproperlyConfigured

from .actions import error_payload

__all__ = ["ActionError", "ActionFailed", "ServiceMisconfigured"]


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
