"""How a Django model's fields appear on the bus and in GraphQL.

Every concrete field has a GraphQL type name (``nautilus_core.types.SCALARS``): the
primary key, foreign keys and the columns of a connection (``holds_id``) are ``ID``
(a foreign key is its id), dates are ISO
strings, and so on. Payloads name fields by their Django name, their column name
(``author_id``) or the camelCase / snake_case spelling of either.
"""
import datetime
import decimal
import inspect
import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.duration import duration_iso_string
from django.utils.text import capfirst

from nautilus_core.types import json_value

__all__ = ["graphql_type", "always_set", "field_description", "model_description", "model_fields", "field_lookup",
           "field_value", "json_value", "record_of", "deleted_record", "parse_input",
           "UnsupportedField"]


class UnsupportedField(TypeError):
    pass


# Most specific first: DateTimeField is a DateField, BigIntegerField an IntegerField.
_TYPES = [
    (models.BooleanField, "Boolean"),
    (models.BigIntegerField, "BigInt"),
    (models.IntegerField, "Int"),
    (models.FloatField, "Float"),
    (models.DecimalField, "Decimal"),
    (models.DateTimeField, "DateTime"),
    (models.DateField, "Date"),
    (models.TimeField, "Time"),
    (models.DurationField, "String"),  # ISO 8601, e.g. "P1DT02H00M00S"
    (models.UUIDField, "UUID"),
    (models.JSONField, "JSON"),
    (models.CharField, "String"),  # also Email, Slug, URL, FilePath
    (models.TextField, "String"),
    (models.GenericIPAddressField, "String"),
    (models.FileField, "String"),  # the stored file's name
]

# The JSON types a payload may use for each GraphQL type (bool is not an Int).
_JSON_TYPES = {
    "ID": (str, int), "String": (str,), "Int": (int,), "BigInt": (int,), "Float": (int, float),
    "Boolean": (bool,), "Decimal": (str, int, float), "Date": (str,), "DateTime": (str,),
    "Time": (str,), "UUID": (str,), "JSON": None,
}
_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "a list", dict: "an object", type(None): "null"}


def graphql_type(field):
    if field.primary_key or field.is_relation or getattr(field, "holds_id", False):
        return "ID"
    for field_class, name in _TYPES:
        if isinstance(field, field_class):
            return name
    raise UnsupportedField(f"{field.model.__name__}.{field.name} ({type(field).__name__}) has no GraphQL type")


def always_set(field):
    """Whether every row has a value (non-null in GraphQL): the database refuses null, and a file
    field without a file is written as null too."""
    return not field.null and not isinstance(field, models.FileField)


def field_description(field):
    """The field's ``help_text``, else its ``verbose_name`` as a sentence."""
    if field.primary_key and field.auto_created and not field.help_text:
        return "The primary key."
    text = str(field.help_text or "").strip() or capfirst(str(field.verbose_name))
    return text if text.endswith(".") else f"{text}."


def model_description(model, service_class, service_name):
    """The model's own docstring, else its service class's, else a sentence of ours (first paragraph)."""
    for owner in (model, service_class):
        doc = owner.__dict__.get("__doc__") or ""
        if doc and not doc.startswith(f"{owner.__name__}("):  # Django writes "Recipe(id, name, …)" when there is none
            return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    return f"A row of the {service_name} service ({model._meta.verbose_name})."


def model_fields(model):
    """The fields a service exposes: every concrete field, many-to-many excluded."""
    return [f for f in model._meta.concrete_fields]


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def field_lookup(model):
    """``{any accepted spelling: field}``, with ``pk`` for the primary key."""
    lookup = {}
    for field in model_fields(model):
        for spelling in (field.name, field.attname):
            lookup.setdefault(spelling, field)
            lookup.setdefault(_camel(spelling), field)
            lookup.setdefault(_snake(spelling), field)
    lookup["pk"] = model._meta.pk
    return lookup


def field_value(field, row):
    """A row's value of a field as its GraphQL scalar takes it: a foreign key as its id,
    a duration as ISO 8601, a file as its name."""
    value = field.value_from_object(row)
    if isinstance(value, datetime.timedelta):
        return duration_iso_string(value)
    if isinstance(field, models.FileField):
        return value.name or None
    if isinstance(field, models.DecimalField) and value is not None:
        return decimal.Decimal(value).quantize(decimal.Decimal(1).scaleb(-field.decimal_places))  # as stored
    return value


def record_of(row):
    """A row as the JSON object the bus carries: ``{field name: value}``, foreign keys as ids."""
    return {f.name: json_value(field_value(f, row)) for f in model_fields(type(row))}


def deleted_record(row):
    """What a delete outcome carries: the row as it was just before the delete (``record_of``), with ``id``
    (its pk, whatever the pk's name), so that listeners can judge who could read it."""
    record = record_of(row)
    return {"id": record[type(row)._meta.pk.name], **record}


def parse_input(model, payload, *, required):
    """Validate a create/update payload; return ``({attname: value}, {name: [errors]})``.

    Reports every problem at once: unknown and read-only fields, values of the wrong
    JSON type or that do not parse, and (with ``required``) every missing field.
    """
    lookup = field_lookup(model)
    values, errors = {}, {}
    for key, raw in payload.items():
        field = lookup.get(key)
        if field is None:
            errors[key] = ["Unknown field."]
        elif not field.editable or (field.primary_key and field.auto_created) or (
                field.primary_key and isinstance(field, models.AutoField)):
            errors[key] = ["This field is set by the service and cannot be written."]
        else:
            try:
                values[field.attname] = _parse(field, raw)
            except ValidationError as exc:
                errors[field.name] = exc.messages
    if required:
        given = set(values) | {lookup[k].attname for k in errors if k in lookup}
        for field in required_fields(model):
            if field.attname not in given:
                errors[field.name] = ["This field is required."]
    return values, errors


def _parse(field, raw):
    if raw is None:
        if not field.null:
            raise ValidationError("This field cannot be null.")
        return None
    accepted = _JSON_TYPES[graphql_type(field)]
    if accepted and (not isinstance(raw, accepted) or (isinstance(raw, bool) and bool not in accepted)):
        expected = " or ".join(_JSON_NAMES[t] for t in accepted)
        raise ValidationError(f"Expected {expected}, got {_JSON_NAMES.get(type(raw), type(raw).__name__)}.")
    value = field.to_python(raw)
    if isinstance(field, models.DateTimeField) and isinstance(raw, str) and value is None:
        raise ValidationError("Not a valid ISO 8601 date and time.")
    return value


def required_fields(model):
    """Fields a create must name: no default, not nullable, not blank, not set by the service."""
    return [
        f for f in model_fields(model)
        if f.editable and not f.has_default() and not f.null and not f.blank
        and not (f.primary_key and isinstance(f, models.AutoField))
    ]
