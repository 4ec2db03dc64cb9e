"""Every all_models filter, asked through the bus of a real recipe service (its own database)."""
import pytest

from .conftest import RECIPES



@pytest.fixture(scope="module")
def seeded(cloud, bus):
    """foo1, bar1, foo2, bar2 … foo10, bar10 (interleaved, as the original's tests); servings = n."""
    cloud.start(RECIPES)
    ids = {}
    for n in range(1, 11):
        for prefix in ("foo", "bar"):
            reply = bus.ask("create.recipe.pending", {"name": f"{prefix}{n}", "servings": n,
                                                      "vegetarian": prefix == "foo"}, timeout=10)
            ids[f"{prefix}{n}"] = reply.payload["id"]
    return ids


def names(bus, arguments):
    reply = bus.ask("read.recipe.pending", {"query": "{ all_models%s { name } }" % arguments}, timeout=10)
    assert reply.action_type == "read.recipe.success", reply.payload
    return [row["name"] for row in reply.payload["data"]["all_models"]]


def error(bus, arguments):
    reply = bus.ask("read.recipe.pending", {"query": "{ all_models%s { name } }" % arguments}, timeout=10)
    errors = reply.payload.get("errors") or reply.payload.get("details", {}).get("errors")
    assert errors, reply.payload
    return errors[0]["message"]


@pytest.mark.parametrize("arguments, expected", [
    ('(name: "foo1")', ["foo1"]),
    ('(name_in: ["foo1", "foo2"])', ["foo1", "foo2"]),
    ("(servings: 3)", ["foo3", "bar3"]),
    ("(servings_in: [1, 10])", ["foo1", "bar1", "foo10", "bar10"]),
    ('(servings: 2, vegetarian: false)', ["bar2"]),
    ("(first: 2)", ["foo1", "bar1"]),
    ("(first: 2, offset: 0)", ["foo1", "bar1"]),
    ("(first: 0)", []),
    ("(first: 4, offset: 2)", ["foo2", "bar2", "foo3", "bar3"]),
    ("(last: 2)", ["foo10", "bar10"]),
    ("(last: 2, offset: 2)", ["foo9", "bar9"]),
    ("(last: 0)", []),
    ("(offset: 18)", ["foo10", "bar10"]),
    ('(order_by: ["-name"], first: 3)', ["foo9", "foo8", "foo7"]),
    ('(order_by: ["+vegetarian", "-servings"], first: 3)', ["bar10", "bar9", "bar8"]),
    ('(order_by: ["servings", "-name"], first: 4, offset: 2)', ["foo2", "bar2", "foo3", "bar3"]),
    ('(order_by: ["-pk"], first: 1)', ["bar10"]),
])
def test_filters(bus, seeded, arguments, expected):
    assert names(bus, arguments) == expected


def test_pk_and_pk_in(bus, seeded):
    assert names(bus, f'(pk: "{seeded["bar4"]}")') == ["bar4"]
    assert names(bus, f'(pk_in: ["{seeded["foo7"]}", "{seeded["bar2"]}"])') == ["bar2", "foo7"]
    assert names(bus, f'(id: "{seeded["foo5"]}")') == ["foo5"]


def test_camel_case_spelling_in_order_by(bus, seeded):
    # the model field is created_at; both spellings are accepted
    assert names(bus, '(order_by: ["-createdAt"], first: 1)') == names(bus, '(order_by: ["-created_at"], first: 1)')


@pytest.mark.parametrize("arguments, message", [
    ("(first: 1, last: 1)", "first and last cannot be used together."),
    ("(first: -1)", "first must not be negative."),
    ("(offset: -5)", "offset must not be negative."),
    ('(order_by: ["-nope"])', "Recipe has no field 'nope'."),
    ("(pkg: 1)", "Unknown argument 'pkg'"),
])
def test_bad_filters_are_clear_errors(bus, seeded, arguments, message):
    assert message in error(bus, arguments)
