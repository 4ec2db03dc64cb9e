"""Row rules as data: which rows a caller may read, evaluated by the service that owns them.

A rule is a JSON boolean expression in the shape of Hasura's row permissions::

    {"_or": [{"private": {"_eq": false}}, {"owner": {"_eq": "$user_id"}}]}

- ``{"<field>": {"<operator>": value, …}}`` compares one field (the model's name for it, or
  ``pk``); several operators, or several fields in one object, must all hold;
- ``{"_and": [rule, …]}``, ``{"_or": [rule, …]}``, ``{"_not": rule}`` combine rules;
  ``{}`` holds for every row, ``{"_or": []}`` for none;
- operators: ``_eq``, ``_neq``, ``_gt``, ``_gte``, ``_lt``, ``_lte``, ``_in``, ``_nin``, ``_is_null``;
- the string ``"$user_id"`` anywhere stands for the caller's id (a string), or null without a
  session. A comparison with null holds for no row (as in SQL: ``owner = NULL`` is not true);
  ``{"_is_null": true}`` asks for null fields.

The gateway substitutes the caller (``substitute``) and sends the rule with a read as its
``where`` (README, "Wire protocol"); the model service turns it into a filter of the same
query that orders and pages (``model_service.filters``), so paging counts visible rows only.
"""

__all__ = ["USER_ID", "COMBINATORS", "OPERATORS", "RuleError", "substitute", "validate_rule", "holds"]

USER_ID = "$user_id"
COMBINATORS = ("_and", "_or", "_not")
OPERATORS = ("_eq", "_neq", "_gt", "_gte", "_lt", "_lte", "_in", "_nin", "_is_null")


class RuleError(ValueError):
    """A rule that is not of the shape above (the message says where)."""


def substitute(rule, user_id):
    """The rule with every ``"$user_id"`` replaced by ``user_id`` (None for an anonymous caller)."""
    if isinstance(rule, dict):
        return {key: substitute(value, user_id) for key, value in rule.items()}
    if isinstance(rule, list):
        return [substitute(value, user_id) for value in rule]
    return user_id if rule == USER_ID else rule


def validate_rule(rule, where="rule"):
    """Raise RuleError unless ``rule`` has the shape above (field names are the service's to check)."""
    if not isinstance(rule, dict):
        raise RuleError(f"{where} must be an object, got {rule!r}")
    for key, value in rule.items():
        if key in ("_and", "_or"):
            if not isinstance(value, list):
                raise RuleError(f"{where}.{key} must be a list of rules")
            for n, item in enumerate(value):
                validate_rule(item, f"{where}.{key}[{n}]")
        elif key == "_not":
            validate_rule(value, f"{where}._not")
        elif key.startswith("_"):
            raise RuleError(f"{where}: unknown combinator {key!r} (known: {', '.join(COMBINATORS)})")
        elif not isinstance(value, dict) or not value:
            raise RuleError(f"{where}.{key} must be an object of operators, e.g. {{\"_eq\": …}}")
        else:
            for operator, operand in value.items():
                if operator not in OPERATORS:
                    raise RuleError(f"{where}.{key}: unknown operator {operator!r} (known: {', '.join(OPERATORS)})")
                if operator in ("_in", "_nin") and not isinstance(operand, list):
                    raise RuleError(f"{where}.{key}.{operator} takes a list")
                if operator == "_is_null" and not isinstance(operand, bool):
                    raise RuleError(f"{where}.{key}._is_null takes true or false")


def holds(rule, row):
    """Whether a substituted rule holds for ``row`` (a dict of wire values, with ``pk``), as the service's
    filter would say: for a row that is gone, from the row its delete outcome carries."""
    for key, value in rule.items():
        if key == "_and" and not all(holds(item, row) for item in value):
            return False
        if key == "_or" and not any(holds(item, row) for item in value):
            return False
        if key == "_not" and holds(value, row):
            return False
        if not key.startswith("_") and not all(_compares(operator, row.get(key), operand)
                                               for operator, operand in value.items()):
            return False
    return True


def _same(a, b):
    if type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                              and not isinstance(a, bool) and not isinstance(b, bool)):
        return a == b
    return str(a).lower() == str(b).lower() if isinstance(a, bool) or isinstance(b, bool) else str(a) == str(b)


def _order(a, b):
    """-1, 0 or 1; None when the two cannot be compared."""
    try:
        a, b = (float(a), float(b)) if not (isinstance(a, str) and isinstance(b, str)) else (a, b)
    except (TypeError, ValueError):
        return None
    return (a > b) - (a < b)


def _compares(operator, field, operand):
    if operator == "_is_null":
        return (field is None) == operand
    if field is None:
        return False  # as in SQL: a null field equals, differs from and exceeds nothing
    if operator in ("_in", "_nin"):
        found = any(_same(field, item) for item in operand if item is not None)
        return found if operator == "_in" else not found
    if operand is None:
        return False
    if operator == "_eq":
        return _same(field, operand)
    if operator == "_neq":
        return not _same(field, operand)
    order = _order(field, operand)
    if order is None:
        return False
    return {"_gt": order > 0, "_gte": order >= 0, "_lt": order < 0, "_lte": order <= 0}[operator]
