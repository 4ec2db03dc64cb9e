"""The filters of ``all_models``, generated from the model (the original's, with its bugs fixed).

``<field>`` and ``<field>_in`` for every field, ``pk`` and ``pk_in`` for the primary key
(``pk`` only as a whole name), ``first``, ``last``, ``offset`` (``0`` is honoured), and
``order_by`` with ``+f`` / ``-f`` / ``f`` entries. ``last: n`` gives the final n rows of
the ordering, still in that order.

A read may carry a row rule (``nautilus_core.rules``, the caller's read permission): it
filters the same query, so ordering and paging see only the rows the caller may read.
"""
from functools import reduce
from operator import and_, or_

from django.core.exceptions import ValidationError
from django.db.models import Q
from graphql import GraphQLError

from nautilus_core.rules import RuleError, validate_rule

from .fields import field_lookup

__all__ = ["filter_model", "rule_filter"]

_NOTHING = Q(pk__in=[])  # a condition no row meets (Q() is one every row meets)
_LOOKUPS = {"_eq": "exact", "_gt": "gt", "_gte": "gte", "_lt": "lt", "_lte": "lte", "_in": "in"}


def filter_model(model, args, where=None):
    """Apply ``all_models`` arguments, within the rows ``where`` allows, to the model's rows; return a list."""
    args = dict(args)
    first, last, offset = args.pop("first", None), args.pop("last", None), args.pop("offset", None)
    order_by = args.pop("order_by", None)
    for name, value in (("first", first), ("last", last), ("offset", offset)):
        if value is not None and value < 0:
            raise GraphQLError(f"{name} must not be negative.")
    if first is not None and last is not None:
        raise GraphQLError("first and last cannot be used together.")

    rows = model._default_manager.filter(**_lookups(model, args))
    if where is not None:
        try:
            rows = rows.filter(rule_filter(model, where))
        except (ValidationError, ValueError, TypeError) as exc:
            raise GraphQLError(f"The read rule does not fit {model.__name__}: {exc}") from None
    rows = rows.order_by(*_ordering(model, order_by))
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


def rule_filter(model, rule):
    """The Django ``Q`` of a row rule (``nautilus_core.rules``); GraphQLError if it does not fit the model."""
    try:
        validate_rule(rule)
    except RuleError as exc:
        raise GraphQLError(f"Invalid read rule: {exc}") from None
    return _rule_q(model, rule)


def _rule_q(model, rule):
    conditions = []
    for key, value in rule.items():
        if key == "_and":
            conditions.append(reduce(and_, [_rule_q(model, item) for item in value], Q()))
        elif key == "_or":
            alternatives = [_rule_q(model, item) for item in value]
            # Q() holds for every row, but Q() | x is x in Django: an empty alternative makes the _or hold
            conditions.append(Q() if any(not q for q in alternatives) else reduce(or_, alternatives, _NOTHING))
        elif key == "_not":
            inner = _rule_q(model, value)
            conditions.append(~inner if inner else _NOTHING)  # ~Q() would keep every row
        else:
            column = "pk" if key == "pk" else _field(model, key).attname
            conditions.extend(_comparison(column, operator, operand) for operator, operand in value.items())
    return reduce(and_, conditions, Q())


def _comparison(column, operator, operand):
    if operator == "_is_null":
        return Q(**{f"{column}__isnull": operand})
    if operator in ("_in", "_nin"):
        operand = [item for item in operand if item is not None]
    elif operand is None:
        return _NOTHING  # as in SQL, nothing equals (or differs from, or exceeds) null
    if operator == "_neq":
        return Q(**{f"{column}__isnull": False}) & ~Q(**{column: operand})
    if operator == "_nin":
        return Q(**{f"{column}__isnull": False}) & ~Q(**{f"{column}__in": operand})
    return Q(**{f"{column}__{_LOOKUPS[operator]}": operand})
