"""ConnectionService: a ModelService over a generated join model, with cascade deletes.

::

    class Ingredients(nautilus.ConnectionService):    # service "ingredients"
        from_service = ("recipe",)                     # column "recipe"
        to_service = ("ingredient",)                   # column "ingredient"

    class Follows(nautilus.ConnectionService):        # a service linked to itself
        from_service = ("user", "follower")            # (service, related name of the column)
        to_service = ("user", "followed")

The join model is generated in the app that holds the service class, named like the
class (``Ingredients``), when Django starts (``ConnectionServiceConfig.ready``), so
``manage.py makemigrations <app>`` and ``migrate`` handle it like any model. Setting
``model = <a model with both columns>`` uses your own model instead.

When ``delete.<side>.success`` is published, every row pointing at the deleted id is
removed and ``delete.<connection>.success`` is published per row, carrying the row as it was
(``{"id", <from column>, <to column>}``), like every delete outcome.
"""
import dataclasses

from django.apps import apps
from django.db.models import Q
from django.utils.module_loading import import_string

from model_service.fields import deleted_record
from model_service.service import ModelService
from nautilus_core.actions import SUCCESS, MalformedAction, crud_action, name_of
from nautilus_core.conf import nautilus_settings
from nautilus_core.service import ServiceMisconfigured, normalize_name, on_action

from .join import connection_model, sides

__all__ = ["ConnectionService", "register_join_model"]


class ConnectionService(ModelService):
    """Connects rows of ``from_service`` to rows of ``to_service``.

    Its name defaults to the class name with a lower-case first letter (``Ingredients`` → ``ingredients``).
    """

    from_service = None
    to_service = None

    def __init__(self, model=None, **kwargs):
        cls = type(self)
        self.source, self.target = sides(cls.from_service, cls.to_service)
        kwargs.setdefault("name", cls.name or normalize_name(cls.__name__))
        if kwargs["name"] in (self.source.service, self.target.service):
            raise ServiceMisconfigured(
                f"The connection {kwargs['name']!r} has the name of a service it links; it would cascade on its own "
                "deletes. Give the class (or `name`) another name.", check_id="nautilus.E022")
        model = model or cls.model or cls.join_model()
        missing = [s.column for s in (self.source, self.target) if s.column not in {f.name for f in model._meta.fields}]
        if missing:
            raise ServiceMisconfigured(f"The model {model.__name__} of {cls.__name__} has no column "
                                       f"{', '.join(missing)}.", check_id="nautilus.E024")
        for side in (self.source, self.target):  # the linked rows' ids: ID in GraphQL (model_service.fields)
            model._meta.get_field(side.column).holds_id = True
        super().__init__(model=model, **kwargs)

    @classmethod
    def join_model(cls):
        """The generated join model, in the installed app whose package holds this class."""
        app_config = apps.get_containing_app_config(cls.__module__)
        if app_config is None:
            raise ServiceMisconfigured(
                f"{cls.__module__}.{cls.__name__} is not in an installed app, so its join model has no home: "
                "define it in a module of an app listed in INSTALLED_APPS.", check_id="nautilus.E023")
        return connection_model(cls.from_service, cls.to_service, app_config.label, name=cls.__name__)

    def get_handlers(self):
        handlers = super().get_handlers()
        # one handler per linked service (a single one when the service is linked to itself)
        for service in {self.source.service, self.target.service}:
            handlers[crud_action("delete", service, SUCCESS)] = self.cascade_delete
        return handlers

    def summarize(self, **extra):
        return super().summarize(connection={"from": self.source.summary(), "to": self.target.summary()}, **extra)

    # -- handlers --------------------------------------------------------------------

    @on_action()
    def create(self, action):
        return super().create(self._ids_as_strings(action))

    @on_action()
    def update(self, action):
        return super().update(self._ids_as_strings(action))

    @on_action()
    def cascade_delete(self, action):
        """``delete.<linked service>.success``: remove the rows that point at the deleted id."""
        deleted = _deleted_id(action)
        service = name_of(action.action_type)
        match = Q()
        for side in (self.source, self.target):
            if side.service == service:
                match |= Q(**{side.column: deleted})
        rows = self.model._default_manager
        removed = [deleted_record(row) for row in rows.select_for_update().filter(match).order_by("pk")]
        rows.filter(pk__in=[record["id"] for record in removed]).delete()
        # through the outbox: committed with the delete, published after it, never lost in between
        for record in removed:
            self.emit(crud_action("delete", self.name, SUCCESS), record)

    def _ids_as_strings(self, action):
        """Accept ids as JSON integers too (as services reply them); the columns keep strings."""
        payload = dict(action.payload)
        for side in (self.source, self.target):
            value = payload.get(side.column)
            if isinstance(value, int) and not isinstance(value, bool):
                payload[side.column] = str(value)
        return dataclasses.replace(action, payload=payload)


def _deleted_id(action):
    """The id in a delete outcome (``{"id": …}``); a payload without a usable one is malformed."""
    value = action.payload.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise MalformedAction(
            f'{action.action_type} must carry {{"id": <string or integer>}}, got {action.payload!r}',
            action.to_dict())
    return str(value)


def register_join_model():
    """Generate the configured ConnectionService's join model, if it has to be (at Django start).

    Errors are left to the system checks, which report them with their ids.
    """
    try:
        cls = import_string(nautilus_settings.SERVICE or "")
    except ImportError:
        return  # nautilus.E001 / E002
    if isinstance(cls, type) and issubclass(cls, ConnectionService) and cls.model is None:
        try:
            cls.join_model()
        except ServiceMisconfigured:
            pass
