"""The filters of ``all_models``, generated from the model (the original's, with its bugs fixed).

``<field>`` and ``<field>_in`` for every field, ``pk`` and ``pk_in`` for the primary key
(``pk`` only as a whole name), ``first``, ``last``, ``offset`` (``0`` is honoured), and
``order_by`` with ``+f`` / ``-f`` / ``f`` entries. ``last: n`` gives the final n rows of
the ordering, still in that order.
"""
from graphql import GraphQLError

from .fields import field_lookup

__all__ = ["filter_model"]


def filter_model(model, args):
    """Apply ``all_models`` arguments to the model's rows; return a list."""
    args = dict(args)
    first, last, offset = args.pop("first", None), args.pop("last", None), args.pop("offset", None)
    order_by = args.pop("order_by", None)
    for name, value in (("first", first), ("last", last), ("offset", offset)):
        if value is not None and value < 0:
            raise GraphQLError(f"{name} must not be negative.")
    if first is not None and last is not None:
        raise GraphQLError("first and last cannot be used together.")

    rows = model._default_manager.filter(**_lookups(model, args)).order_by(*_ordering(model, order_by))
    if last is not None:
        rows = rows.reverse()
    start = offset or 0
    limit = first if first is not None else last
    rows = list(rows[start:start + limit] if limit is not None else rows[start:])
    return rows[::-1] if last is not None else rows


def _lookups(model, args):
    lookups = {}
    for name, value in args.items():
        if name == "pk":
            lookups["pk"] = value
        elif name == "pk_in":
            lookups["pk__in"] = value
        elif name.endswith("_in") and name not in field_lookup(model):
            lookups[f"{_field(model, name[:-3]).attname}__in"] = value
        else:
            lookups[_field(model, name).attname] = value
    return lookups


def _ordering(model, order_by):
    if not order_by:
        return ["pk"]
    ordering = []
    for entry in order_by:
        descending = entry.startswith("-")
        name = entry.lstrip("+-")
        column = "pk" if name == "pk" else _field(model, name).attname
        ordering.append(f"-{column}" if descending else column)
    if "pk" not in ordering and "-pk" not in ordering:
        ordering.append("pk")  # a stable order, so first/last/offset are repeatable
    return ordering


def _field(model, name):
    field = field_lookup(model).get(name)
    if field is None:
        raise GraphQLError(f"{model.__name__} has no field {name!r}.")
    return field
