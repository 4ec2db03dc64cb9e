"""Connection services that must not start: the system checks report each with its id."""
import nautilus
from tests.kitchen.models import Gadget  # imported by the in-process tests only (tests.settings)


class SameServiceUnnamed(nautilus.ConnectionService):
    from_service = ("user",)
    to_service = ("user",)


class NoTarget(nautilus.ConnectionService):
    from_service = ("user",)


class Recipe(nautilus.ConnectionService):
    """Named like a service it links: it would cascade on its own deletes."""

    from_service = ("recipe",)
    to_service = ("ingredient",)


class WrongModel(nautilus.ConnectionService):
    """A model of the user's own that lacks the connection's columns."""

    from_service = ("recipe",)
    to_service = ("ingredient",)
    model = Gadget
