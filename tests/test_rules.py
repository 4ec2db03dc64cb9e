"""Row rules (nautilus_core.rules) as the model service applies them: a filter of the query that pages.

In process on the recipe model (tests/settings.py), against a Python reading of the same rule:
every rule hypothesis makes selects exactly the rows the reading keeps.
"""
import pytest
from graphql import GraphQLError
from hypothesis import HealthCheck, given, settings, strategies as st

from model_service.filters import filter_model, rule_filter
from nautilus_core.rules import substitute

OWNERS = [None, "1", "2"]


@pytest.fixture
def recipes(db):
    from examples.recipe_book.recipes.models import Recipe

    rows = [Recipe.objects.create(name=f"r{n}", owner=owner, private=private, minutes=minutes)
            for n, (owner, private, minutes) in enumerate(
                (o, p, m) for o in OWNERS for p in (False, True) for m in (None, 5, 30))]
    return Recipe, {row.pk: {"owner": row.owner, "private": row.private, "minutes": row.minutes} for row in rows}


def holds(rule, row):
    """The rule read in Python, with SQL's null: a comparison with null holds for no row."""
    result = True
    for key, value in rule.items():
        if key == "_and":
            result &= all(holds(item, row) for item in value)
        elif key == "_or":
            result &= any(holds(item, row) for item in value)
        elif key == "_not":
            result &= not holds(value, row)
        else:
            for op, operand in value.items():
                field = row[key]
                if op == "_is_null":
                    result &= (field is None) == operand
                elif op in ("_in", "_nin"):
                    inside = field is not None and field in [o for o in operand if o is not None]
                    result &= field is not None and (inside if op == "_in" else not inside)
                elif field is None or operand is None:
                    result = False
                else:
                    result &= {"_eq": field == operand, "_neq": field != operand, "_gt": field > operand,
                               "_gte": field >= operand, "_lt": field < operand, "_lte": field <= operand}[op]
    return result


COMPARISONS = st.one_of(
    st.builds(lambda op, v: {"owner": {op: v}}, st.sampled_from(["_eq", "_neq"]),
              st.sampled_from(OWNERS + ["$user_id"])),
    st.builds(lambda op, v: {"owner": {op: v}}, st.sampled_from(["_in", "_nin"]),
              st.lists(st.sampled_from(OWNERS + ["$user_id"]), max_size=3)),
    st.builds(lambda v: {"private": {"_eq": v}}, st.booleans()),
    st.builds(lambda op, v: {"minutes": {op: v}}, st.sampled_from(["_gt", "_gte", "_lt", "_lte", "_eq"]),
              st.sampled_from([None, 0, 5, 30])),
    st.builds(lambda field, v: {field: {"_is_null": v}}, st.sampled_from(["owner", "minutes"]), st.booleans()),
)
RULES = st.recursive(COMPARISONS, lambda inner: st.one_of(
    st.builds(lambda items: {"_and": items}, st.lists(inner, max_size=3)),
    st.builds(lambda items: {"_or": items}, st.lists(inner, max_size=3)),
    st.builds(lambda item: {"_not": item}, inner),
    st.just({})), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=RULES, user_id=st.sampled_from(OWNERS))
def test_a_rule_selects_what_it_says(recipes, rule, user_id):
    model, rows = recipes
    rule = substitute(rule, user_id)
    selected = set(model.objects.filter(rule_filter(model, rule)).values_list("pk", flat=True))
    assert selected == {pk for pk, row in rows.items() if holds(rule, row)}


def test_paging_counts_only_the_rows_the_rule_allows(recipes):
    model, rows = recipes
    rule = {"_or": [{"private": {"_eq": False}}, {"owner": {"_eq": "2"}}]}
    allowed = sorted(pk for pk, row in rows.items() if holds(rule, row))
    assert [r.pk for r in filter_model(model, {"first": 2, "offset": 1}, where=rule)] == allowed[1:3]
    assert [r.pk for r in filter_model(model, {"last": 1, "pk_in": list(rows)}, where=rule)] == allowed[-1:]


@pytest.mark.parametrize("rule, message", [
    ({"secret": {"_eq": 1}}, "Recipe has no field 'secret'"),
    ({"_or": {"private": {"_eq": False}}}, "must be a list of rules"),
    ({"owner": {"_like": "%"}}, "unknown operator '_like'"),
    ({"minutes": {"_eq": "many"}}, "does not fit Recipe"),
])
def test_a_rule_that_does_not_fit_is_an_error(recipes, rule, message):
    model, _ = recipes
    with pytest.raises(GraphQLError, match=message):
        filter_model(model, {}, where=rule)
