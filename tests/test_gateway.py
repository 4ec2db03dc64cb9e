"""The gateway over the example cloud: real services on RabbitMQ and PostgreSQL, queried over HTTP."""
import json
import time
import urllib.request
from collections import Counter

import pytest

from nautilus_core.actions import ANNOUNCE, QUERY

from nautilus_core.testing import BrokerProxy

from .conftest import bearer, graphql, register

pytestmark = pytest.mark.brokers("rabbitmq", "redis")

CREATE_RECIPE = """
mutation Create($name: String!, $servings: Int) {
  createRecipe(name: $name, servings: $servings) { recipe { id name servings } }
}"""
CREATE_INGREDIENT = "mutation($name: String!) { createIngredient(name: $name) { ingredient { id name } } }"
CONNECT = """
mutation($recipe: ID!, $ingredient: ID!) {
  createIngredients(recipe: $recipe, ingredient: $ingredient) { ingredients { id } }
}"""
NESTED = "query Nested($name: String) { recipe(name: $name) { name ingredients { name } } }"


def ok(url, query, variables=None, operation_name=None, headers=None):
    status, body = graphql(url, query, variables, operation_name, headers=headers)
    assert status == 200 and "errors" not in body, body
    return body["data"]


REFRESH = "mutation($t: String!) { refreshSession(refreshToken: $t) { sessionToken refreshToken } }"


@pytest.fixture(scope="module")
def cook(recipe_book):
    """The Authorization header of a registered user, refreshed before its 3 s token expires."""
    session = register(recipe_book["url"], "cook@example.com")
    issued = [time.monotonic()]

    def header():
        if time.monotonic() - issued[0] > 1.5:
            session.update(ok(recipe_book["url"], REFRESH, {"t": session["refreshToken"]})["refreshSession"])
            issued[0] = time.monotonic()
        return bearer(session)

    return header


@pytest.fixture(scope="module")
def kitchen(recipe_book, cook):
    """Pancakes (flour, milk, eggs) and Omelette (eggs, salt), made through gateway mutations."""
    url = recipe_book["url"]
    ids = {}
    for name in ("flour", "milk", "eggs", "salt"):
        ids[name] = ok(url, CREATE_INGREDIENT, {"name": name})["createIngredient"]["ingredient"]["id"]
    dishes = (("Pancakes", 4, ["flour", "milk", "eggs"]), ("Omelette", 1, ["eggs", "salt"]))
    for recipe, servings, ingredients in dishes:
        ids[recipe] = ok(url, CREATE_RECIPE, {"name": recipe, "servings": servings},
                         headers=cook())["createRecipe"]["recipe"]["id"]
        for ingredient in ingredients:
            ok(url, CONNECT, {"recipe": ids[recipe], "ingredient": ids[ingredient]}, headers=cook())
    return ids


def test_mutations_return_only_the_selected_fields(recipe_book, cook):
    data = ok(recipe_book["url"], CREATE_RECIPE, {"name": "Toast", "servings": 1}, headers=cook())
    assert data == {"createRecipe": {"recipe": {"id": data["createRecipe"]["recipe"]["id"], "name": "Toast",
                                                "servings": 1}}}
    recipe_id = data["createRecipe"]["recipe"]["id"]
    updated = ok(recipe_book["url"],
                 'mutation($id: ID!) { updateRecipe(id: $id, servings: 3) { recipe { servings } } }',
                 {"id": recipe_id}, headers=cook())
    assert updated == {"updateRecipe": {"recipe": {"servings": 3}}}
    deleted = ok(recipe_book["url"], 'mutation($id: ID!) { deleteRecipe(id: $id) { id } }', {"id": recipe_id},
                 headers=cook())
    assert deleted == {"deleteRecipe": {"id": recipe_id}}


def test_connections_in_both_directions(recipe_book, kitchen):
    data = ok(recipe_book["url"], """{
      recipe(order_by: ["name"]) { name ingredients(order_by: ["name"]) { name } }
      ingredient(name: "eggs") { name recipes(order_by: ["-name"]) { name servings } }
    }""")
    assert data["recipe"] == [
        {"name": "Omelette", "ingredients": [{"name": "eggs"}, {"name": "salt"}]},
        {"name": "Pancakes", "ingredients": [{"name": "eggs"}, {"name": "flour"}, {"name": "milk"}]},
    ]
    assert data["ingredient"] == [{"name": "eggs", "recipes": [{"name": "Pancakes", "servings": 4},
                                                               {"name": "Omelette", "servings": 1}]}]


def test_the_graphql_language(recipe_book, kitchen):
    document = """
    fragment Basics on Recipe { __typename name servings }
    query First($names: [String]) { dishes: recipe(name_in: $names, order_by: ["name"]) { ...Basics
        salty: ingredients(name: "salt") { label: name } } }
    query Second { recipe(first: 1, order_by: ["-servings"]) { name } }
    """
    first = ok(recipe_book["url"], document, {"names": ["Omelette", "Pancakes"]}, "First")
    assert first == {"dishes": [
        {"__typename": "Recipe", "name": "Omelette", "servings": 1, "salty": [{"label": "salt"}]},
        {"__typename": "Recipe", "name": "Pancakes", "servings": 4, "salty": []}]}
    assert ok(recipe_book["url"], document, None, "Second") == {"recipe": [{"name": "Pancakes"}]}

    status, body = graphql(recipe_book["url"], document, {"names": ["x"]})
    assert status == 200 and "Must provide operation name" in body["errors"][0]["message"]

    status, body = graphql(recipe_book["url"], NESTED, {"name": "Omelette"}, method="GET")
    assert status == 200 and body["data"]["recipe"][0]["name"] == "Omelette"


def test_introspection_lists_the_filters_and_mutations(recipe_book):
    data = ok(recipe_book["url"], """{
      __schema { queryType { fields { name args { name } } } mutationType { fields { name } } }
    }""")
    fields = {f["name"]: {a["name"] for a in f["args"]} for f in data["__schema"]["queryType"]["fields"]}
    assert {"recipe", "ingredient"} <= set(fields)
    assert {"name", "name_in", "pk", "pk_in", "first", "last", "offset", "order_by", "servings"} <= fields["recipe"]
    mutations = {f["name"] for f in data["__schema"]["mutationType"]["fields"]}
    assert {"createRecipe", "updateRecipe", "deleteRecipe", "createIngredient", "createIngredients",
            "deleteIngredients"} <= mutations


def test_errors_are_graphql_errors_not_500s(recipe_book, kitchen, cook):
    url = recipe_book["url"]
    status, body = graphql(url, "{ recipe { name ")
    assert status == 200 and body["errors"][0]["message"].startswith("Syntax Error")
    assert body["errors"][0]["locations"]
    status, body = graphql(url, "{ recipe { nope } }")
    assert status == 200 and "Cannot query field 'nope' on type 'Recipe'" in body["errors"][0]["message"]
    status, body = graphql(url, NESTED, {"name": 5})
    assert status == 200 and "Variable '$name' got invalid value 5" in body["errors"][0]["message"]
    status, body = graphql(url, "mutation { createRecipe(servings: 1) { recipe { id } } }")
    assert status == 200 and "argument 'name' of type 'String!' is required" in body["errors"][0]["message"]

    # the service's own refusal, with its code, at the field's path
    status, body = graphql(url, 'mutation { createRecipe(name: "x", servings: -2) { recipe { id } } }', headers=cook())
    assert status == 200 and body["data"] == {"createRecipe": None}
    error = body["errors"][0]
    assert error["path"] == ["createRecipe"] and error["extensions"]["code"] == "invalid"
    assert "servings" in error["extensions"]["details"]["fields"]
    status, body = graphql(url, 'mutation { deleteRecipe(id: "987654") { id } }', headers=cook())
    assert body["errors"][0]["message"] == "There is no recipe with id '987654'."

    status, body = graphql(url, '{ recipe(first: 1, last: 1) { name } }')
    assert status == 200 and "first and last cannot be used together." in body["errors"][0]["message"]


def test_requests_that_are_not_graphql(recipe_book):
    url = recipe_book["url"]
    request = urllib.request.Request(f"{url}/graphql", data=b"{nope", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400 and "not JSON" in caught.value.read().decode()
    status, body = graphql(url, "")
    assert status == 400
    assert body["errors"][0]["message"] == "The request needs a query: a string holding a GraphQL document."
    status, body = graphql(url, 'mutation { deleteRecipe(id: "1") { id } }', method="GET")
    assert status == 405


def test_cors_lets_a_browser_send_a_token(recipe_book):
    request = urllib.request.Request(f"{recipe_book['url']}/graphql", method="OPTIONS", headers={
        "Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    with urllib.request.urlopen(request, timeout=10) as response:
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://elsewhere.example")
    assert "authorization" in allowed and "content-type" in allowed


def test_graphiql_with_local_assets(recipe_book):
    request = urllib.request.Request(f"{recipe_book['url']}/graphql", headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:
        page = response.read().decode()
    assert "graphiql" in page.lower() and 'src="/static/' in page and "cdn" not in page.lower()


def test_query_api_pending_on_the_bus(bus, kitchen):
    reply = bus.ask(QUERY, {"query": 'query($n: String) { recipe(name: $n) { name ingredients { name } } }',
                            "variables": {"n": "Omelette"}}, timeout=10)
    assert reply.action_type == "query.api.success"
    assert reply.payload == {"data": {"recipe": [{"name": "Omelette", "ingredients": [{"name": "eggs"},
                                                                                      {"name": "salt"}]}]},
                             "errors": []}
    reply = bus.ask(QUERY, {"query": "{ nope }"}, timeout=10)
    assert reply.action_type == "query.api.success" and reply.payload["data"] is None
    assert "Cannot query field 'nope'" in reply.payload["errors"][0]["message"]


def test_a_reannounced_service_changes_the_schema(recipe_book, bus):
    def weather_fields():
        data = ok(recipe_book["url"], '{ __type(name: "Weather") { fields { name } } }')
        return {f["name"] for f in (data["__type"] or {}).get("fields", [])}

    summary = {"name": "weather", "fields": [{"name": "id", "type": "ID"}, {"name": "city", "type": "String"}],
               "mutations": [], "version": "1"}
    bus.publish(ANNOUNCE, summary)
    _eventually(lambda: weather_fields() == {"pk", "id", "city"})
    bus.publish(ANNOUNCE, {**summary, "fields": [*summary["fields"], {"name": "celsius", "type": "Float"}],
                           "version": "2"})
    _eventually(lambda: weather_fields() == {"pk", "id", "city", "celsius"})


def test_a_malformed_announcement_changes_nothing(recipe_book, bus):
    bus.publish(ANNOUNCE, {"name": "broken", "fields": [{"name": "x", "type": "NoSuchType"}]})
    bus.publish(ANNOUNCE, {"name": "later", "fields": [{"name": "id", "type": "ID"}], "mutations": []})
    _eventually(lambda: "later" in ok(recipe_book["url"], "{ _services }")["_services"])
    assert "broken" not in ok(recipe_book["url"], "{ _services }")["_services"]


def _eventually(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


# -- batching: one ask per service per level, whatever the number of rows ----------------------

@pytest.fixture(scope="module")
def hundred_recipes(recipe_book, bus):
    """100 recipes × 5 ingredients each (50 ingredients), created straight on the bus."""
    ingredients = [bus.ask("create.ingredient.pending", {"name": f"batch-ingredient-{n}"}, timeout=10).payload["id"]
                   for n in range(50)]
    recipes = [bus.ask("create.recipe.pending", {"name": f"batch-recipe-{n}"}, timeout=10).payload["id"]
               for n in range(100)]
    links = [bus.ask("create.ingredients.pending", {"recipe": recipe, "ingredient": ingredients[(r + k * 7) % 50]},
                     timeout=10) for r, recipe in enumerate(recipes) for k in range(5)]
    assert all(link.action_type == "create.ingredients.success" for link in links)
    return recipes


def asks_by_service(recorder_, query, url, variables=None):
    reads = recorder_("read.*.pending")
    data = ok(url, query, variables)
    reads.drain(0.5)
    return data, Counter(e["action_type"].split(".")[1] for e in reads.envelopes if e["sender"] == "api"), reads


def test_nested_query_over_100_recipes_costs_one_ask_per_service_per_level(recipe_book, hundred_recipes, recorder):
    query = '{ recipe(name_in: $names) { name ingredients { name } } }'.replace(
        "$names", json.dumps([f"batch-recipe-{n}" for n in range(100)]))
    data, asks, _ = asks_by_service(recorder, query, recipe_book["url"])
    assert len(data["recipe"]) == 100 and all(len(r["ingredients"]) == 5 for r in data["recipe"])
    assert asks == {"recipe": 1, "ingredients": 1, "ingredient": 1}

    # depth 3, back and forth: at most depth + 1 asks per service
    deep = '{ ingredient(name_in: ["batch-ingredient-1", "batch-ingredient-2"]) { recipes { ingredients { name } } } }'
    data, asks, _ = asks_by_service(recorder, deep, recipe_book["url"])
    assert all(len(r["ingredients"]) == 5 for i in data["ingredient"] for r in i["recipes"])
    assert asks == {"ingredient": 2, "ingredients": 2, "recipe": 1}


def test_parent_filters_never_leak_into_a_child_query(recipe_book, kitchen, recorder):
    _, asks, reads = asks_by_service(recorder, NESTED, recipe_book["url"], {"name": "Pancakes"})
    child = [e for e in reads.envelopes if e["action_type"] == "read.ingredient.pending" and e["sender"] == "api"]
    assert len(child) == 1 and set(child[0]["payload"]["variables"]) == {"pk_in"}


# -- the broker going away ------------------------------------------------------------------

@pytest.mark.brokers("rabbitmq")  # the proxy forwards to RabbitMQ's port (tests/test_fault.py has Redis's outage)
def test_the_gateway_reports_a_broker_outage_and_recovers(recipe_book, cloud, broker_url, kitchen):
    """A second gateway replica (same database) reaches RabbitMQ through a proxy that the test cuts."""
    proxy = BrokerProxy()
    try:
        env = {**recipe_book["gateway"].env, "NAUTILUS_BROKER_URL": proxy.url(broker_url), "NAUTILUS_ASK_TIMEOUT": "2"}
        gateway = cloud.start(recipe_book["gateway"].settings, http=True, env=env)
        query = '{ recipe(name: "Omelette") { name } }'
        _eventually(lambda: graphql(gateway.url, query)[1].get("data") == {"recipe": [{"name": "Omelette"}]}, 30)

        proxy.cut()
        time.sleep(0.5)  # its feed of outcomes notices, so its read cache is bypassed (gateway/cache.py)
        started = time.monotonic()
        status, body = graphql(gateway.url, query)
        assert status == 200 and body["data"] == {"recipe": None}
        assert body["errors"][0]["extensions"]["code"] == "service_unavailable"
        assert time.monotonic() - started < 15

        proxy.restore()
        _eventually(lambda: graphql(gateway.url, query)[1].get("data") == {"recipe": [{"name": "Omelette"}]}, 30)
        gateway.stop()
    finally:
        proxy.close()


# -- a stopped service (last: it stops the ingredient worker) ---------------------------------

def test_a_stopped_service_is_a_clear_error_and_the_rest_resolves(recipe_book, kitchen):
    recipe_book["ingredient"].stop()
    started = time.monotonic()
    status, body = graphql(recipe_book["url"], '{ recipe(name: "Omelette") { name ingredients { name } } }')
    elapsed = time.monotonic() - started
    assert status == 200 and elapsed < 6  # the gateway's ask timeout is 2 s here
    assert body["data"] == {"recipe": [{"name": "Omelette", "ingredients": None}]}
    error = body["errors"][0]
    assert error["message"] == "The ingredient service did not answer within 2s."
    assert error["path"] == ["recipe", 0, "ingredients"] and error["extensions"]["code"] == "service_unavailable"
