"""nautilus: clouds of small services on a shared action bus, queried through one GraphQL gateway.

The public names, as in the original library::

    import nautilus

    class RecipeService(nautilus.ModelService):
        model = Recipe

    class Ingredients(nautilus.ConnectionService):
        from_service = ("recipe",)
        to_service = ("ingredient",)

Each name is imported when it is first used, so ``import nautilus`` in a model service
does not load the gateway (its schema builder, resolvers and token machinery).
Modules of the original API: ``nautilus.models`` (``BaseModel``, ``fields``),
``nautilus.api.util`` (``create_model_schema``), ``nautilus.network`` (``crud_handler``),
and the test kit ``nautilus.testing``.
"""
import importlib

# name → the module that defines it
_EXPORTS = {
    "Action": "nautilus_core.actions",
    "ActionError": "nautilus_core.service",
    "Service": "nautilus_core.service",
    "on_action": "nautilus_core.service",
    "ModelService": "model_service.service",
    "ConnectionService": "connection_service.service",
    "APIGateway": "gateway.service",
    "auth_criteria": "gateway.auth",
}

# names of the original library that have no equivalent here, and what to use instead
_REPLACED = {
    "Config": "a service's configuration is its Django settings module; a `config` class on a service "
              "keeps only `database_url` (see the README's porting table)",
    "ServiceManager": "run a service with `manage.py runservice --settings=<its settings>`, migrate its database "
                      "with `manage.py migrate` (the original `syncdb`), and a whole cloud with `manage.py cloud up`",
    "db": "each service has its own Django database: DATABASES in its settings, or `database_url` on its config",
}

__all__ = ["Action", "ActionError", "Service", "ModelService", "ConnectionService", "APIGateway", "auth_criteria",
           "on_action"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # imported once
        return value
    if name in _REPLACED:
        raise AttributeError(f"nautilus.{name} is gone: {_REPLACED[name]}.")
    raise AttributeError(f"module 'nautilus' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_EXPORTS})
