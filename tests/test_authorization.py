"""Issue 14: authorization through the gateway against the real cloud (the recipe book's own rules).

Reads: a read rule travels with each read and the service applies it before it orders and
pages, so no answer depends on a row the caller may not read (the ordering oracle is a
property test over the hidden row's values and the query's order and paging). Writes: owners
are set by the gateway, rows and links are changed by their owners only, and a row the caller
may not read answers exactly as a row that does not exist.
"""
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from .conftest import bearer, graphql, register

CREATE_RECIPE = """mutation($n: String!, $d: String, $m: Int, $s: Int, $p: Boolean) {
  createRecipe(name: $n, description: $d, minutes: $m, servings: $s, private: $p) { recipe { id owner private } } }"""
UPDATE_HIDDEN = """mutation($id: ID!, $n: String, $d: String, $m: Int, $s: Int) {
  updateRecipe(id: $id, name: $n, description: $d, minutes: $m, servings: $s) { recipe { id } } }"""
CREATE_INGREDIENT = 'mutation($n: String!) { createIngredient(name: $n) { ingredient { id } } }'
LINK = "mutation($r: ID!, $i: ID!) { createIngredients(recipe: $r, ingredient: $i) { ingredients { id } } }"
UNLINK = "mutation($id: ID!) { deleteIngredients(id: $id) { id } }"
MOVE_LINK = "mutation($id: ID!, $r: ID) { updateIngredients(id: $id, recipe: $r) { ingredients { id } } }"
GATEWAY_ENV = {"NAUTILUS_ACCESS_TOKEN_LIFETIME": "3600"}  # the users' sessions last the whole module
FIELDS = ("name", "description", "minutes", "servings", "pk")
EXAMPLES = int(os.environ.get("NAUTILUS_FUZZ_EXAMPLES", "40"))  # more: NAUTILUS_FUZZ_EXAMPLES=500


def ok(url, query, variables=None, session=None):
    status, body = graphql(url, query, variables, headers=bearer(session) if session else None)
    assert status == 200 and "errors" not in body, body
    return body["data"]


def error_of(url, query, variables=None, session=None):
    status, body = graphql(url, query, variables, headers=bearer(session) if session else None)
    assert status == 200 and body.get("errors"), body
    return body["errors"][0]["message"], body["errors"][0].get("extensions", {}).get("code")


def recipe(url, session, name, private=False, **values):
    given = {"d": values.get("description"), "m": values.get("minutes"), "s": values.get("servings")}
    created = ok(url, CREATE_RECIPE, {"n": name, "p": private, **{k: v for k, v in given.items() if v is not None}},
                 session)
    return created["createRecipe"]["recipe"]


def ingredient(url, name):
    return ok(url, CREATE_INGREDIENT, {"n": name})["createIngredient"]["ingredient"]["id"]


def link(url, session, recipe_id, ingredient_id):
    return ok(url, LINK, {"r": recipe_id, "i": ingredient_id}, session)["createIngredients"]["ingredients"]["id"]


@pytest.fixture(scope="module")
def book(recipe_book):
    """User A with a private recipe P and a public one; user B with recipes of its own; ingredients X
    (linked to P and to every visible recipe) and Y (linked to the visible ones only)."""
    url = recipe_book["url"]
    a, b = register(url, "author@example.com"), register(url, "reader@example.com")
    hidden = recipe(url, a, "P", private=True, description="SECRET: grandma's", minutes=17)
    public = recipe(url, a, "a public one", description="m", minutes=30, servings=2)
    own = [recipe(url, b, name, private=private, **values) for name, private, values in (
        ("B's first", False, {"description": "SECRET", "minutes": 17, "servings": 4}),
        ("B's private", True, {"description": "b", "minutes": None, "servings": 1}),
        ("  ", False, {"description": "", "minutes": 0, "servings": 1}),
        ("Zz", False, {"description": "zzz", "minutes": 999, "servings": 3}))]
    visible = [public["id"], *(r["id"] for r in own)]
    x, y = ingredient(url, "oracle x"), ingredient(url, "oracle y")
    link(url, a, hidden["id"], x)
    for recipe_id in visible:
        owner = a if recipe_id == public["id"] else b
        link(url, owner, recipe_id, x)
        link(url, owner, recipe_id, y)
    return {"url": url, "a": a, "b": b, "hidden": hidden["id"], "public": public["id"], "own": own,
            "visible": visible, "x": x, "y": y}


def test_the_owner_field_is_the_gateways(book):
    url, a = book["url"], book["a"]
    created = recipe(url, a, "mine")
    assert created["owner"] == a["user"]["id"] and created["private"] is False
    for query in ('mutation { createRecipe(name: "theirs", owner: "1") { recipe { id } } }',
                  'mutation($id: ID!) { updateRecipe(id: $id, owner: "1") { recipe { id } } }',
                  'mutation($id: ID!) { updateRecipe(id: $id, owner: null) { recipe { id } } }'):
        message, _ = error_of(url, query, {"id": created["id"]} if "$id" in query else None, a)
        assert "Unknown argument 'owner'" in message
    assert ok(url, '{ recipe(pk: "%s") { owner } }' % created["id"], session=a) == {
        "recipe": [{"owner": a["user"]["id"]}]}


def test_recipes_are_changed_by_their_owner_only(book):
    url, a, b = book["url"], book["a"], book["b"]
    rename = 'mutation($id: ID!) { updateRecipe(id: $id, name: "taken over") { recipe { name } } }'
    delete = 'mutation($id: ID!) { deleteRecipe(id: $id) { id } }'
    assert error_of(url, rename, {"id": book["public"]}, b) == ("Only its owner may update this recipe.", "forbidden")
    assert error_of(url, delete, {"id": book["public"]}, b) == ("Only its owner may delete this recipe.", "forbidden")
    assert error_of(url, rename, {"id": book["public"]})[1] == "unauthenticated"
    # a private row of someone else answers exactly as a row that does not exist
    for query in (rename, delete):
        for pk in (book["hidden"], "987654321"):
            assert error_of(url, query, {"id": pk}, b) == (f"There is no recipe with id '{pk}'.", "not_found")
    assert ok(url, '{ recipe(pk: "%s") { name } }' % book["hidden"], session=a) == {"recipe": [{"name": "P"}]}
    mine = recipe(url, b, "short-lived")
    assert ok(url, delete, {"id": mine["id"]}, b) == {"deleteRecipe": {"id": mine["id"]}}


def test_links_are_made_and_removed_by_the_owner_of_the_recipe(book):
    url, a, b = book["url"], book["a"], book["b"]
    salt = ingredient(url, "guarded salt")
    missing = "987654321"
    # to a private recipe of someone else: as to no recipe at all; to a public one: forbidden
    assert error_of(url, LINK, {"r": book["hidden"], "i": salt}, b) == (
        f"There is no recipe with id '{book['hidden']}'.", "not_found")
    assert error_of(url, LINK, {"r": missing, "i": salt}, b) == (f"There is no recipe with id '{missing}'.",
                                                                 "not_found")
    assert error_of(url, LINK, {"r": book["public"], "i": salt}, b)[1] == "forbidden"
    assert error_of(url, LINK, {"r": book["own"][0]["id"], "i": missing}, b) == (
        f"There is no ingredient with id '{missing}'.", "not_found")
    # removing or moving A's links: as removing a link that does not exist
    hidden_link = link(url, a, book["hidden"], salt)
    public_link = link(url, a, book["public"], salt)
    for query, variables in ((UNLINK, {"id": hidden_link}), (UNLINK, {"id": missing}),
                             (MOVE_LINK, {"id": hidden_link, "r": book["own"][0]["id"]})):
        assert error_of(url, query, variables, b) == (f"There is no ingredients with id '{variables['id']}'.",
                                                      "not_found")
    assert error_of(url, UNLINK, {"id": public_link}, b)[1] == "forbidden"
    # nor moves its own link onto A's recipes
    own_link = link(url, b, book["own"][0]["id"], salt)
    assert error_of(url, MOVE_LINK, {"id": own_link, "r": book["hidden"]}, b)[1] == "not_found"
    assert error_of(url, MOVE_LINK, {"id": own_link, "r": book["public"]}, b)[1] == "forbidden"
    assert ok(url, '{ recipe(pk: "%s") { ingredients(name: "guarded salt") { name } } }' % book["hidden"],
              session=a) == {"recipe": [{"ingredients": [{"name": "guarded salt"}]}]}
    assert ok(url, UNLINK, {"id": hidden_link}, a) == {"deleteIngredients": {"id": hidden_link}}


def test_the_oracle_of_the_issue_sees_nothing(book):
    """``recipe(pk_in: [P, a], order_by: ["description", "-pk"], first: 1)`` answered [] when P sorted first."""
    url, b = book["url"], book["b"]
    mine = book["own"][0]["id"]
    query = '{ recipe(pk_in: ["%s", "%s"], order_by: ["description", "-pk"], first: 1) { pk } }' % (
        book["hidden"], mine)
    assert ok(url, query, session=b) == {"recipe": [{"pk": mine}]}


def test_pages_are_pages_of_visible_rows(book):
    url, b = book["url"], book["b"]
    assert ok(url, '{ user(first: 1, order_by: ["-pk"]) { email } }', session=b) == {
        "user": [{"email": "reader@example.com"}]}
    newest = ok(url, '{ recipe(first: 1, order_by: ["-pk"]) { pk } }')["recipe"]
    visible = ok(url, "{ recipe { pk private } }")["recipe"]
    assert newest == [{"pk": max((r["pk"] for r in visible), key=int)}] and not any(r["private"] for r in visible)


ORDER = st.lists(st.sampled_from(FIELDS), unique=True, max_size=3).flatmap(
    lambda names: st.tuples(*(st.sampled_from([name, f"-{name}"]) for name in names)).map(list))
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hidden=st.fixed_dictionaries({"n": TEXT.filter(bool), "d": TEXT, "m": st.none() | st.integers(0, 1000),
                                     "s": st.integers(0, 6)}),
       order_by=ORDER, first=st.none() | st.integers(0, 6), last=st.none() | st.integers(0, 6),
       offset=st.none() | st.integers(0, 6), anonymous=st.booleans())
def test_no_answer_depends_on_a_hidden_row(book, hidden, order_by, first, last, offset, anonymous):
    """Whatever the hidden row holds and however the query orders and pages, at the top level and in a
    connection, through aliases and fragments: the answer is the one over the visible rows only."""
    url = book["url"]
    ok(url, UPDATE_HIDDEN, {"id": book["hidden"], **hidden}, book["a"])
    arguments = "order_by: $order_by, offset: $offset, " + ("last: $page" if first is None else "first: $page")
    query = f"""query($with: [ID], $without: [ID], $x: ID, $y: ID, $order_by: [String], $page: Int, $offset: Int) {{
      with: recipe(pk_in: $with, {arguments}) {{ ...seen }}
      without: recipe(pk_in: $without, {arguments}) {{ ...seen }}
      x: ingredient(pk: $x) {{ recipes({arguments}) {{ ...seen }} }}
      y: ingredient(pk: $y) {{ recipes({arguments}) {{ ...seen }} }}
    }}
    fragment seen on Recipe {{ pk name minutes }}"""
    variables = {"with": [book["hidden"], *book["visible"]], "without": book["visible"], "x": book["x"],
                 "y": book["y"], "order_by": order_by, "offset": offset, "page": last if first is None else first}
    data = ok(url, query, variables, None if anonymous else book["b"])
    assert data["with"] == data["without"]
    assert data["x"] == data["y"]
    assert book["hidden"] not in {row["pk"] for row in data["with"] + data["x"][0]["recipes"]}


def test_the_readmes_rules_are_the_code_that_runs():
    from .conftest import PROJECT_DIR

    readme = (PROJECT_DIR / "README.md").read_text()
    code = (PROJECT_DIR / "examples" / "recipe_book" / "gateway" / "services.py").read_text()
    assert f"```python\n{code}```" in readme


def test_a_misshapen_read_rule_fails_the_system_checks():
    from examples.recipe_book.gateway.services import RecipeBookAPI

    class Broken(RecipeBookAPI):
        read_rules = {"recipe": {"_or": {"private": {"_eq": False}}}, "user": {"pk": {"_like": "%"}},
                      "ingredient": {"name": "salt"}}

    assert RecipeBookAPI().check() == []
    errors = Broken().check()
    assert [e.id for e in errors] == ["nautilus.E031"] * 3
    assert [e.msg for e in errors] == [
        "read_rules['recipe']._or must be a list of rules",
        "read_rules['user'].pk: unknown operator '_like' (known: _eq, _neq, _gt, _gte, _lt, _lte, _in, _nin, _is_null)",
        "read_rules['ingredient'].name must be an object of operators, e.g. {\"_eq\": …}"]
