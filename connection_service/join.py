"""The join model of a connection, generated from the two services it links.

A connection row is ``id`` plus one column per side, named after the side's service
(``recipe``, ``ingredient``), or after its related name when one is given. Linking a
service to itself needs the related names, or both columns would have one name::

    connection_model("recipe", "ingredient", "my_app")                  # Recipe ↔ Ingredient
    connection_model("user", "user", "my_app", name="Follows",
                     related_names=("follower", "followed"))             # User → User

Ids are kept as strings, so services whose primary keys are not integers (UUIDs,
codes) can be connected too (the original cast them to int).
"""
from dataclasses import dataclass

from django.apps import apps
from django.db import models

from nautilus_core.service import ServiceMisconfigured, normalize_name

__all__ = ["Side", "sides", "connection_model", "ID_MAX_LENGTH"]

ID_MAX_LENGTH = 255
RESERVED_COLUMNS = {"id", "pk"}


@dataclass(frozen=True)
class Side:
    """One end of a connection: the linked service and, optionally, the related name of its column."""

    service: str
    field: str | None = None

    @property
    def column(self):
        return self.field or self.service

    def summary(self):
        """``{"service": …}``, plus ``"field"`` when a related name names the column."""
        return {"service": self.service, **({"field": self.field} if self.field else {})}


def _service_name(value, which):
    if isinstance(value, type):  # a Service class, as the original allowed
        model = getattr(value, "model", None)
        value = value.name or normalize_name(model.__name__ if model is not None else value.__name__)
    if not isinstance(value, str) or not value.isidentifier():
        raise ServiceMisconfigured(
            f"{which} names the service {value!r}: a service name must be a Python identifier "
            "(it is part of action types and a column name).", check_id="nautilus.E022")
    return normalize_name(value)


def side(declared, which, related_name=None):
    """A Side from ``"recipe"``, ``("recipe",)`` or ``("user", "follower")`` (service, related name)."""
    if isinstance(declared, (str, type)):
        declared = (declared,)
    if not isinstance(declared, (tuple, list)) or not 1 <= len(declared) <= 2:
        raise ServiceMisconfigured(
            f'{which} is missing: declare `{which} = ("<service name>",)`, or `("<service name>", '
            '"<related name>")` to name the column.', check_id="nautilus.E021")
    service = _service_name(declared[0], which)
    field = related_name or (declared[1] if len(declared) == 2 else None)
    if field is not None and (not isinstance(field, str) or not field.isidentifier()):
        raise ServiceMisconfigured(f"{which} has the related name {field!r}; it must be a Python identifier.",
                                   check_id="nautilus.E022")
    result = Side(service, field)
    if result.column in RESERVED_COLUMNS:
        raise ServiceMisconfigured(f"{which} would make a column named {result.column!r}, which is the row's own id; "
                                   "give it another related name.", check_id="nautilus.E022")
    return result


def sides(from_service, to_service, related_names=None):
    """``(from Side, to Side)``, checked: the two columns must have different names."""
    names = tuple(related_names) if related_names else (None, None)
    source = side(from_service, "from_service", names[0])
    target = side(to_service, "to_service", names[1])
    if source.column == target.column:
        raise ServiceMisconfigured(
            f"The connection links {source.service!r} to itself, so both of its columns would be named "
            f"{source.column!r}. Name each side: from_service = ({source.service!r}, \"follower\"), "
            f"to_service = ({target.service!r}, \"followed\").", check_id="nautilus.E020")
    return source, target


def connection_model(from_service, to_service, app_label, name=None, related_names=None):
    """The join model linking two services, registered in the app ``app_label`` (created once).

    ``name`` defaults to the two column names (``RecipeIngredient``). Calling it again with
    the same arguments returns the same model, so a service may be instantiated many times.
    """
    source, target = sides(from_service, to_service, related_names)
    name = name or "".join(s.column[:1].upper() + s.column[1:] for s in (source, target))
    try:
        existing = apps.get_registered_model(app_label, name)
    except LookupError:
        existing = None
    if existing is not None:
        if getattr(existing, "nautilus_connection", None) != (source, target):
            raise ServiceMisconfigured(
                f"{app_label}.{name} is already a model, but not the join model of {source.service} → "
                f"{target.service}: rename one of them, or set `model = {name}` on the service.",
                check_id="nautilus.E024")
        return existing
    try:
        app_config = apps.get_app_config(app_label)
    except LookupError:
        raise ServiceMisconfigured(f"The app {app_label!r} of the join model {name} is not installed.",
                                   check_id="nautilus.E023") from None

    def column(s, indexed):
        return models.CharField(max_length=ID_MAX_LENGTH, db_index=indexed,
                                help_text=f"The id of the linked {s.service} (as a string).")

    meta = type("Meta", (), {
        "app_label": app_label,
        "verbose_name": f"{source.column} → {target.column} connection",
        "constraints": [models.UniqueConstraint(  # connecting the same two rows twice means nothing more
            fields=[source.column, target.column], name=f"{app_label}_{name.lower()}_once"[:63])],
    })
    return type(name, (models.Model,), {
        "__module__": f"{app_config.name}.models",
        "__doc__": f"A connection from a {source.service} to a {target.service} (generated by connection_service).",
        "Meta": meta,
        # the unique constraint's index already serves lookups by the first column
        source.column: column(source, indexed=False),
        target.column: column(target, indexed=True),
        "nautilus_connection": (source, target),
        "__str__": lambda row: (f"{source.column} {getattr(row, source.column)} → "
                                f"{target.column} {getattr(row, target.column)}"),
    })
