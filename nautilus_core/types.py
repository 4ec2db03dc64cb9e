"""The GraphQL scalar types a summary may name, shared by services and the gateway.

A summary's field ``type`` is one of these names; the gateway maps it back to the
same graphene scalar, so both ends agree on how a value is written.
"""
import datetime
import decimal
import uuid

import graphene
from graphene.types.generic import GenericScalar

__all__ = ["SCALARS", "scalar", "wire_scalar", "json_value", "object_type"]

SCALARS = {
    "ID": graphene.ID,
    "String": graphene.String,
    "Int": graphene.Int,
    "BigInt": graphene.BigInt,
    "Float": graphene.Float,
    "Boolean": graphene.Boolean,
    "Decimal": graphene.Decimal,
    "UUID": graphene.UUID,
    "Date": graphene.Date,
    "DateTime": graphene.DateTime,
    "Time": graphene.Time,
    "JSON": GenericScalar,
}


def scalar(type_name):
    try:
        return SCALARS[type_name]
    except KeyError:
        raise ValueError(f"Unknown GraphQL type {type_name!r}; expected one of {sorted(SCALARS)}") from None


def json_value(value):
    """A scalar as JSON: ISO dates, decimals and UUIDs as strings (lists converted item by item)."""
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return value


def _passing_strings_through(base):
    """``base`` whose output also takes the JSON string a service already wrote (an ISO date…)."""
    def serialize(value):
        return value if isinstance(value, str) else base.serialize(value)

    return type(base.__name__, (base,), {"serialize": staticmethod(serialize), "Meta": type("Meta", (), {
        "name": base._meta.name, "description": base._meta.description})})


_WIRE = {name: _passing_strings_through(SCALARS[name]) for name in ("Decimal", "UUID", "Date", "DateTime", "Time")}


def wire_scalar(type_name):
    """The scalar for a value that arrives as JSON from a service (the gateway's side)."""
    return _WIRE.get(type_name) or scalar(type_name)


def object_type(name, description, attrs):
    """A graphene ObjectType named ``name`` with ``attrs`` as its fields, described."""
    return type(name, (graphene.ObjectType,), {**attrs, "Meta": type("Meta", (), {"description": description})})
