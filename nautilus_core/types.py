"""The GraphQL scalar types a summary may name, shared by services and the gateway.

A summary's field ``type`` is one of these names; the gateway maps it back to the
same graphene scalar, so both ends agree on how a value is written.
"""
import graphene
from graphene.types.generic import GenericScalar

__all__ = ["SCALARS", "scalar"]

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
