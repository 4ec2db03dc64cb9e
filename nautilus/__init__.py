"""nautilus: clouds of small services on a shared action bus, queried through one GraphQL gateway.

The public names, as in the original library::

    import nautilus

    class RecipeService(nautilus.ModelService):
        model = Recipe

    class Ingredients(nautilus.ConnectionService):
        from_service = ("recipe",)
        to_service = ("ingredient",)
"""
from connection_service.service import ConnectionService
from gateway.auth import auth_criteria
from gateway.service import APIGateway
from model_service.service import ModelService
from nautilus_core.actions import Action
from nautilus_core.service import ActionError, Service, on_action

__all__ = ["Action", "ActionError", "Service", "ModelService", "ConnectionService", "APIGateway", "auth_criteria",
           "on_action"]
