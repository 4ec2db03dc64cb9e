"""The original's ``nautilus.network``: ``crud_handler(Model)``, an action handler for a model's CRUD.

::

    class MyService(nautilus.Service):
        name = "recipes"
        schema = create_model_schema(Recipe)
        action_handler = crud_handler(Recipe)   # create|read|update|delete.recipe.pending

It answers as a ModelService does (the payloads of the README's wire protocol). A
ModelService (``model = Recipe``) does the same, and announces the model's fields and
mutations to the gateway too.
"""
from .._gone import gone

__all__ = ["crud_handler"]


def crud_handler(Model, name=None):
    """The action handler of ``create|read|update|delete.<name>.pending`` for ``Model``.

    ``name`` defaults to the model's (``Recipe`` → ``recipe``). Reads are not recorded
    (they change nothing); the other three are, so a redelivery has no second effect.
    """
    from model_service.service import ModelService
    from nautilus_core.actions import crud_action
    from nautilus_core.service import normalize_name

    name = name or normalize_name(Model.__name__)
    model_service = []  # made at the first action: Django's apps are ready by then

    def handle(service, action_type, payload, props):
        if not model_service:
            model_service.append(ModelService(model=Model, name=name))
        return model_service[0].handlers[action_type](props["action"])

    handle.__name__ = f"crud_handler_{name}"
    handle.action_types = {crud_action(method, name): method != "read"
                           for method in ("create", "read", "update", "delete")}
    return handle


# the original's HTTP names (here and in nautilus.network.http)
HTTP_REPLACEMENTS = {
    "RequestHandler": "an HTTP endpoint is a Django view: a function `def view(request)` or a django.views.View "
                      "subclass, given to Service.route(url) or service.add_http_endpoint(url, view).",
    "Response": "return a django.http.HttpResponse (or JsonResponse) from the view.",
}

__getattr__ = gone(__name__, {
    **HTTP_REPLACEMENTS,
    "ActionHandler": "a service handles actions with `@nautilus.on_action(<type>)` methods, or a function "
                     "`action_handler(service, action_type, payload, props)` (see nautilus_core.original).",
    "combine_action_handlers": "write one `@nautilus.on_action(<type>)` method per action type on the service.",
})
