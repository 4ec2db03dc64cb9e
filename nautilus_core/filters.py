"""The arguments of ``all_models``: one definition for the services and the gateway.

A model service declares them from its model's fields, the gateway from a service's
summary, and the gateway's reads name their variable types from them too: ``<field>`` and
``<field>_in`` for every field (no ``_in`` for JSON), ``pk``, ``pk_in``, ``first``, ``last``,
``offset`` and ``order_by``.
"""
import graphene

__all__ = ["PAGING_ARGUMENTS", "argument_types", "filter_arguments"]

PAGING_ARGUMENTS = ("first", "last", "offset", "order_by")
_FIXED = {"pk": "ID", "pk_in": "[ID]", "first": "Int", "last": "Int", "offset": "Int", "order_by": "[String]"}


def argument_types(fields):
    """``{argument: GraphQL type}`` for fields given as ``(name, type name)`` pairs."""
    types = {}
    for name, type_ in fields:
        types[name] = type_
        if type_ != "JSON":
            types[f"{name}_in"] = f"[{type_}]"
    return {**types, **_FIXED}


def filter_arguments(fields, scalar):
    """graphene Arguments for those fields; ``scalar`` maps a type name to its graphene scalar."""
    def argument(type_):
        return graphene.Argument(graphene.List(scalar(type_[1:-1])) if type_.startswith("[") else scalar(type_))

    return {name: argument(type_) for name, type_ in argument_types(fields).items()}
