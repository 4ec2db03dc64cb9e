"""The arguments of ``all_models``: one definition for the services and the gateway.

A model service declares them from its model's fields, the gateway from a service's
summary, and the gateway's reads name their variable types from them too: ``<field>`` and
``<field>_in`` for every field (no ``_in`` for JSON), ``pk``, ``pk_in``, ``first``, ``last``,
``offset`` and ``order_by``. Each carries a description.
"""
import graphene

__all__ = ["PAGING_ARGUMENTS", "argument_types", "filter_arguments"]

PAGING_ARGUMENTS = ("first", "last", "offset", "order_by")
_FIXED = {"pk": "ID", "pk_in": "[ID]", "first": "Int", "last": "Int", "offset": "Int", "order_by": "[String]"}
_FIXED_DESCRIPTIONS = {
    "pk": "Only the row with this primary key.",
    "pk_in": "Only the rows with one of these primary keys.",
    "first": "At most this many rows, from the start of the order.",
    "last": "At most this many rows, from the end of the order (still in order); not with first.",
    "offset": "Skip this many rows first.",
    "order_by": 'Field names to order by, each optionally prefixed with "-" (descending) or "+"; then by pk.',
}


def argument_types(fields):
    """``{argument: GraphQL type}`` for fields given as ``(name, type name)`` pairs."""
    types = {}
    for name, type_ in fields:
        types[name] = type_
        if type_ != "JSON":
            types[f"{name}_in"] = f"[{type_}]"
    return {**types, **_FIXED}


def _description(argument, fields):
    if argument in _FIXED_DESCRIPTIONS:
        return _FIXED_DESCRIPTIONS[argument]
    if argument in fields:
        return f"Only rows whose {argument} is this value."
    return f"Only rows whose {argument[:-3]} is one of these values."


def filter_arguments(fields, scalar):
    """graphene Arguments for those fields; ``scalar`` maps a type name to its graphene scalar."""
    fields = list(fields)
    names = {name for name, _ in fields}

    def argument(name, type_):
        if type_.startswith("["):
            return graphene.Argument(graphene.List(scalar(type_[1:-1])),
                                     description=_description(name, names))
        return graphene.Argument(scalar(type_), description=_description(name, names))

    return {name: argument(name, type_) for name, type_ in argument_types(fields).items()}
