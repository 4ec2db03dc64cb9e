"""The limits of one GraphQL request (nautilus_core.limits), in process, on a small schema of our own.

The same documents against the real gateway are in test_hostile_queries.py; here each rule is
pinned down: fragments and inline fragments count, variables give ``first`` its value,
fragment cycles and "billion laughs" cost linear time, and nothing is cached that failed.
"""
import time

import graphene
import pytest
from graphql import get_introspection_query
from hypothesis import given, settings, strategies as st

from nautilus_core.graphql import DocumentCache, Refused, document_cache, execute_query
from nautilus_core.limits import ASKS, Limits

LIMITS = Limits(max_depth=6, max_fields=60, max_cost=1000, max_asks=5, page_size=10, max_document_size=4000,
                introspection=True)


class Node(graphene.ObjectType):
    """A node of a tree."""

    name = graphene.String(description="Its name.")
    children = graphene.List(graphene.NonNull(lambda: Node), first=graphene.Int(), description="Its children.")

    def resolve_name(root, info):
        return "n"

    def resolve_children(root, info, first=None):
        return [Node() for _ in range(first if first is not None else 2)]


class Query(graphene.ObjectType):
    """The root."""

    node = graphene.Field(Node, description="The root node.")
    nodes = graphene.List(graphene.NonNull(Node), first=graphene.Int(), description="Some nodes.")

    def resolve_node(root, info):
        return Node()

    def resolve_nodes(root, info, first=None):
        return [Node() for _ in range(first if first is not None else 2)]


SCHEMA = graphene.Schema(query=Query)
SCHEMA.graphql_schema.query_type.fields["nodes"].extensions = {ASKS: 1}  # as the gateway marks its reads


def codes(result):
    return [error.extensions.get("code") for error in result.errors or ()]


def run(query, variables=None, limits=LIMITS):
    return execute_query(SCHEMA, query, variables, limits=limits)


def nested(depth):
    return "{ node { " + "children(first: 1) { " * (depth - 2) + "name" + " }" * (depth - 2) + " } }"


def test_a_query_within_the_limits_runs():
    result = run("{ node { name children(first: 3) { name } } }")
    assert not isinstance(result, Refused) and result.errors is None
    assert result.data == {"node": {"name": "n", "children": [{"name": "n"}] * 3}}


def test_depth():
    assert run(nested(6)).errors is None
    result = run(nested(7))
    assert isinstance(result, Refused) and codes(result) == ["query_too_deep"]
    assert result.errors[0].extensions == {"code": "query_too_deep", "limit": 6, "found": 7}
    assert result.errors[0].message == "The query nested 7 fields deep; at most 6."


def test_fragments_and_inline_fragments_count_in_depth_and_fields():
    inline = "{ node { ... on Node { children(first: 1) { ... on Node { children(first: 1) { " \
             "children(first: 1) { children(first: 1) { children(first: 1) { name } } } } } } } } }"
    assert codes(run(inline)) == ["query_too_deep"]
    spread = "query { node { ...A } } fragment A on Node { children(first: 1) { ...B } } " \
             "fragment B on Node { children(first: 1) { children(first: 1) { children(first: 1) { " \
             "children(first: 1) { name } } } } }"
    assert codes(run(spread)) == ["query_too_deep"]
    aliases = "{ node { " + " ".join(f"a{i}: name" for i in range(30)) + " ...F } } fragment F on Node { " + \
              " ".join(f"b{i}: name" for i in range(30)) + " }"
    assert codes(run(aliases)) == ["too_many_fields"]


def test_cost_counts_list_fields_by_first_or_the_page_size():
    # nodes(first: 30) { children(first: 30) { name } }: 1 + 30 × (1 + 30 × 1) = 931 values
    assert run("{ nodes(first: 30) { children(first: 30) { name } } }").errors is None
    assert codes(run("{ nodes(first: 32) { children(first: 32) { name } } }")) == ["query_too_complex"]
    # without first: the page size (10) per level; 1 + 10 × (1 + 10 × (1 + 10 × 1)) = 1111
    assert codes(run("{ nodes { children { children { name } } } }")) == ["query_too_complex"]
    # first given as a variable counts by the variable's value, or the variable's default
    query = "query($n: Int = 40) { nodes(first: $n) { children(first: $n) { name } } }"
    assert run(query, {"n": 5}).errors is None
    assert codes(run(query, {"n": 1000})) == ["query_too_complex"]
    assert codes(run(query)) == ["query_too_complex"]


def test_asks_are_counted_by_the_fields_that_ask():
    assert run("{ " + " ".join(f"n{i}: nodes(first: 1) {{ name }}" for i in range(5)) + " }").errors is None
    result = run("{ " + " ".join(f"n{i}: nodes(first: 1) {{ name }}" for i in range(6)) + " }")
    assert codes(result) == ["too_many_asks"]


def test_fragment_bombs_are_measured_in_linear_time():
    laughs = "query { node { ...F30 } } fragment F0 on Node { name } " + " ".join(
        f"fragment F{i} on Node {{ a: children(first: 1) {{ ...F{i - 1} }} b: children(first: 1) {{ ...F{i - 1} }} }}"
        for i in range(1, 31))
    started = time.perf_counter()
    result = run(laughs, limits=Limits(**{**LIMITS.__dict__, "max_document_size": 100000}))
    assert time.perf_counter() - started < 1
    assert "too_many_fields" in codes(result) and "query_too_deep" in codes(result)
    cycle = "query { node { ...A } } fragment A on Node { children { ...B } } fragment B on Node { children { ...A } }"
    result = run(cycle)
    assert isinstance(result, Refused) and any("cycle" in error.message.lower() or "spread" in error.message.lower()
                                               for error in result.errors)


def test_document_size():
    result = run("{ node { name } }" + " " * 4000)
    assert isinstance(result, Refused) and codes(result) == ["document_too_large"]


def test_introspection_is_answered_and_can_be_turned_off():
    introspection = get_introspection_query(descriptions=True)
    # GraphiQL's query nests ofType 7 deep (15 fields in all): introspection does not count in depth
    assert run(introspection, limits=Limits(**{**LIMITS.__dict__, "max_depth": 3, "max_fields": 500,
                                               "max_document_size": 10000})).errors is None
    off = Limits(**{**LIMITS.__dict__, "introspection": False})
    result = run("{ __schema { queryType { name } } }", limits=off)
    assert isinstance(result, Refused) and "introspection" in result.errors[0].message.lower()
    bomb = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    assert isinstance(run(bomb), Refused)


def test_variables_that_do_not_fit_and_unknown_operations_are_refused_not_executed():
    assert isinstance(run("query($n: Int!) { nodes(first: $n) { name } }", {}), Refused)
    assert isinstance(run("query($n: Int) { nodes(first: $n) { name } }", {"n": "many"}), Refused)
    assert isinstance(execute_query(SCHEMA, "query A { node { name } }", operation_name="B", limits=LIMITS), Refused)
    assert isinstance(run("{ node { nope } }"), Refused) and isinstance(run("{ node {"), Refused)


def test_only_valid_documents_are_cached():
    cache = document_cache(SCHEMA.graphql_schema)
    before = len(cache)
    for query in ("{ node {", "{ node { nope } }", nested(9), "{ node { name } }   # valid"):
        run(query)
    assert len(cache) == before + 1


def test_the_cache_is_bounded_by_bytes():
    cache = DocumentCache(budget=100 * DocumentCache.BYTES_PER_CHARACTER)
    for n in range(10):
        cache.put(f"{{ a{n} }}" + " " * 30, object())  # 37 characters each: two fit
    assert len(cache) == 2 and cache.size <= cache.budget
    cache.put("x" * 101, object())  # over the whole budget: not kept, nothing dropped for it
    assert len(cache) == 2


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_no_document_is_an_exception(query):
    result = run(query)
    assert isinstance(result, Refused) or result.errors is None or result.data is not None


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=10))
def test_no_variables_are_an_exception(value):
    result = run("query($n: Int) { nodes(first: $n) { name } }", {"n": value})
    assert isinstance(result, Refused) or result.errors is None
    result = execute_query(SCHEMA, "{ node { name } }", value, limits=LIMITS)
    assert isinstance(result, Refused) or result.data is not None


@pytest.mark.parametrize("first", [10 ** 6, 2 ** 70])
def test_huge_firsts(first):
    result = run(f"{{ nodes(first: {first}) {{ name }} }}")
    assert isinstance(result, Refused)


def test_the_limits_are_settings(monkeypatch):
    from nautilus_core.conf import nautilus_settings

    monkeypatch.setenv("NAUTILUS_INTROSPECTION", "0")
    monkeypatch.setenv("NAUTILUS_MAX_QUERY_DEPTH", "4")
    nautilus_settings.reload()
    try:
        limits = Limits.from_settings()
        assert limits.introspection is False and limits.max_depth == 4
        assert codes(execute_query(SCHEMA, nested(5))) == ["query_too_deep"]
        assert isinstance(execute_query(SCHEMA, "{ __schema { queryType { name } } }"), Refused)
        monkeypatch.setenv("NAUTILUS_INTROSPECTION", "maybe")
        nautilus_settings.reload()
        with pytest.raises(ValueError):
            Limits.from_settings()
    finally:
        monkeypatch.undo()
        nautilus_settings.reload()
    assert Limits.from_settings().introspection is True
