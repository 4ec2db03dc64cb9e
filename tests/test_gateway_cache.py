"""The gateway's read cache (issue 16, item 1): a read the cloud answered is not asked again, and every
change the gateway has seen shows in the reads that start after it. Real services on RabbitMQ (and Redis)
and PostgreSQL, the gateway under runservice, asks counted on the bus and hits on the gateway's /metrics."""
import re
import threading
import time
import tracemalloc
import urllib.request
from collections import Counter

import pytest

from gateway.cache import ReadCache
from nautilus_core.testing import BrokerProxy, manage

from .conftest import RECIPES, bearer, graphql, register

pytestmark = pytest.mark.brokers("rabbitmq", "redis")

GATEWAY_SETTINGS = "tests.cache_gateway.settings"  # the recipe book's + a Python criterion on ingredients
CACHE_BYTES = 262144
GATEWAY_ENV = {"NAUTILUS_GATEWAY_CACHE": str(CACHE_BYTES), "NAUTILUS_ACCESS_TOKEN_LIFETIME": "120"}

RECIPE = "query($name: String) { recipe(name: $name) { id name servings ingredients { name } } }"
INGREDIENT = "query($name: String) { ingredient(name: $name) { name recipes { name } } }"
CREATE_RECIPE = "mutation($name: String!, $servings: Int, $private: Boolean) { createRecipe(name: $name, " \
                "servings: $servings, private: $private) { recipe { id } } }"
UPDATE_RECIPE = "mutation($id: ID!, $servings: Int) { updateRecipe(id: $id, servings: $servings) { recipe { id } } }"
DELETE_RECIPE = "mutation($id: ID!) { deleteRecipe(id: $id) { id } }"
CREATE_INGREDIENT = "mutation($name: String!) { createIngredient(name: $name) { ingredient { id } } }"
CONNECT = "mutation($r: ID!, $i: ID!) { createIngredients(recipe: $r, ingredient: $i) { ingredients { id } } }"
DISCONNECT = "mutation($id: ID!) { deleteIngredients(id: $id) { id } }"
LOGIN = "mutation($e: String!, $p: String!) { loginUser(email: $e, password: $p) { sessionToken } }"
SETTLE = 0.5  # seconds for the outcomes of a test's set-up to reach the gateway's feed


def ok(url, query, variables=None, headers=None):
    status, body = graphql(url, query, variables, headers=headers)
    assert status == 200 and "errors" not in body, body
    return body["data"]


def cache_counts(url):
    """``{result: count}`` of ``nautilus_gateway_cache_total`` on the gateway's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return Counter({result: float(count) for result, count in
                    re.findall(r'^nautilus_gateway_cache_total\{[^}]*result="(\w+)"[^}]*\} (\S+)$', text, re.M)})


def asks_of(recorder_, read, *args):
    """Run ``read(*args)``; return its value and the reads the gateway asked meanwhile, by service."""
    reads = recorder_("read.*.pending")
    value = read(*args)
    reads.drain(0.5)
    return value, Counter(e["action_type"].split(".")[1] for e in reads.envelopes if e["sender"] == "api")


@pytest.fixture(scope="module")
def users(recipe_book):
    """``headers(name)``: a fresh session of ann or bob."""
    for name in ("ann", "bob"):
        register(recipe_book["url"], f"{name}@cache.example")

    def headers(name):
        session = ok(recipe_book["url"], LOGIN, {"e": f"{name}@cache.example", "p": "correct horse battery"})
        return bearer(session["loginUser"])

    return headers


# -- the cache on its own (no broker) ------------------------------------------------------------

def test_an_answer_asked_before_a_change_is_not_kept():
    cache = ReadCache(10_000)
    assert cache.lookup("recipe", "k") == (None, None)  # not following the bus yet: nothing may be kept
    cache.following()
    _, ticket = cache.lookup("recipe", "k")
    cache.changed("recipe")  # the outcome came while the ask was out
    assert not cache.put("recipe", "k", "[old]", ticket) and len(cache) == 0
    _, ticket = cache.lookup("recipe", "k")
    cache.changed("ingredient")  # another service's change does not matter
    assert cache.put("recipe", "k", "[new]", ticket) and cache.lookup("recipe", "k") == ("[new]", None)
    cache.changed("recipe")
    assert cache.lookup("recipe", "k")[0] is None and cache.size == 0


def test_losing_the_feed_empties_the_cache_and_voids_every_ticket():
    cache = ReadCache(10_000)
    cache.following()
    _, ticket = cache.lookup("recipe", "a")
    cache.put("recipe", "a", "[1]", ticket)
    _, late = cache.lookup("recipe", "b")
    cache.lost("connection reset")
    assert len(cache) == 0 and cache.size == 0 and cache.lookup("recipe", "a") == (None, None)
    cache.following()  # back: the ticket of before the loss is still void
    assert not cache.put("recipe", "b", "[2]", late)


def test_memory_stays_within_the_bound_under_many_distinct_answers():
    budget = 200_000
    cache = ReadCache(budget)
    cache.following()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for n in range(20_000):
            key = f'[1,{{"query":"query Read($name: String) {{ all_models(name: $name) {{ pk name }} }}",' \
                  f'"variables":{{"name":"distinct-{n}"}}}}]'
            text = f'{{"data":{{"all_models":[{{"pk":"{n}","name":"distinct-{n} {"é" * (n % 3)}"}}]}}}}'
            cache.put("recipe", key, text, cache.lookup("recipe", key)[1])
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert cache.size <= budget and 0 < len(cache) < 20_000
    assert held <= budget, f"{held} bytes held for a budget of {budget}"


# -- through the gateway --------------------------------------------------------------------------

def test_a_read_answered_once_is_not_asked_again(recipe_book, users, recorder):
    url = recipe_book["url"]
    ok(url, CREATE_RECIPE, {"name": "asked once", "servings": 2}, headers=users("ann"))
    time.sleep(SETTLE)
    before = cache_counts(url)
    first, asks = asks_of(recorder, ok, url, RECIPE, {"name": "asked once"})
    assert asks["recipe"] == 1
    for _ in range(3):
        again, asks = asks_of(recorder, ok, url, RECIPE, {"name": "asked once"})
        assert again == first and sum(asks.values()) == 0
    counts = cache_counts(url)
    assert counts["hit"] - before["hit"] >= 3 * 2  # the recipe and its (empty) links, three times


def test_every_kind_of_change_through_the_gateway_shows_in_the_next_read(recipe_book, users):
    """No waiting: a mutation returns only once the answers it changes are gone."""
    url, ann = recipe_book["url"], users("ann")

    def read():
        ok(url, RECIPE, {"name": "every change"})  # the answer is kept…
        return ok(url, RECIPE, {"name": "every change"})["recipe"]  # …and given again until a change

    before = cache_counts(url)
    assert read() == []
    recipe = ok(url, CREATE_RECIPE, {"name": "every change", "servings": 1}, headers=ann)["createRecipe"]["recipe"]
    assert read() == [{"id": recipe["id"], "name": "every change", "servings": 1, "ingredients": []}]
    ok(url, UPDATE_RECIPE, {"id": recipe["id"], "servings": 2}, headers=ann)
    assert read()[0]["servings"] == 2
    salt = ok(url, CREATE_INGREDIENT, {"name": "every salt"})["createIngredient"]["ingredient"]["id"]
    link = ok(url, CONNECT, {"r": recipe["id"], "i": salt}, headers=ann)["createIngredients"]["ingredients"]["id"]
    assert read()[0]["ingredients"] == [{"name": "every salt"}]
    ok(url, DISCONNECT, {"id": link}, headers=ann)
    assert read()[0]["ingredients"] == []
    ok(url, DELETE_RECIPE, {"id": recipe["id"]}, headers=ann)
    assert read() == []
    assert cache_counts(url)["hit"] - before["hit"] >= 6


def _eventually(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


def test_changes_outside_the_gateway_and_a_cascade_show(recipe_book, bus, recorder):
    """The bus, the recipe service's ORM (manage.py shell: the outbox) and a delete's cascade to links."""
    url = recipe_book["url"]
    recipe = bus.ask("create.recipe.pending", {"name": "outside"}, timeout=10).payload["id"]
    pepper = bus.ask("create.ingredient.pending", {"name": "outside pepper"}, timeout=10).payload["id"]
    bus.ask("create.ingredients.pending", {"recipe": recipe, "ingredient": pepper}, timeout=10)
    time.sleep(SETTLE)

    def names():
        return [r["name"] for r in ok(url, INGREDIENT, {"name": "outside pepper"})["ingredient"][0]["recipes"]]

    assert names() == ["outside"]
    _, asks = asks_of(recorder, names)
    assert sum(asks.values()) == 0  # kept: ingredient, ingredients and recipe

    bus.ask("update.recipe.pending", {"id": recipe, "name": "outside, renamed"}, timeout=10)
    _eventually(lambda: names() == ["outside, renamed"])
    manage(RECIPES, "shell", "--verbosity=0", "-c", "from examples.recipe_book.recipes.models import Recipe; "
           f"r = Recipe.objects.get(pk={recipe}); r.name = 'outside, by the ORM'; r.save()",
           env=recipe_book["recipe"].env)
    _eventually(lambda: names() == ["outside, by the ORM"])

    cascade = recorder("delete.ingredients.success")
    bus.ask("delete.recipe.pending", {"id": recipe}, timeout=10)
    cascade.wait_for(lambda e: e["action_type"] == "delete.ingredients.success")
    _eventually(lambda: names() == [])
    # the links' answers went with the cascade's outcome: the connection is asked again, once
    _, asks = asks_of(recorder, names)
    _, again = asks_of(recorder, names)
    assert asks["ingredients"] + again["ingredients"] <= 1 and sum(again.values()) == 0
    _eventually(lambda: asks_of(recorder, names)[1]["ingredients"] == 0)


def test_readers_never_see_a_row_older_than_the_last_change_the_gateway_saw(recipe_book, users):
    """Four readers and a writer at once; each read is checked against the writes that returned before it began."""
    url, ann = recipe_book["url"], users("ann")
    recipe = ok(url, CREATE_RECIPE, {"name": "raced", "servings": 0}, headers=ann)["createRecipe"]["recipe"]["id"]
    time.sleep(SETTLE)
    writes, reads, done = [(time.monotonic(), 0)], [], threading.Event()
    query = "query($id: ID) { recipe(pk: $id) { servings } }"

    def writer():
        try:
            for servings in range(1, 31):
                ok(url, UPDATE_RECIPE, {"id": recipe, "servings": servings}, headers=ann)
                writes.append((time.monotonic(), servings))  # the gateway has seen it by now
                time.sleep(0.03)
        finally:
            done.set()

    def reader():
        while not done.is_set():
            started = time.monotonic()
            reads.append((started, ok(url, query, {"id": recipe})["recipe"][0]["servings"]))

    before = cache_counts(url)
    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    stale = [(started, seen, max(v for t, v in writes if t < started)) for started, seen in reads
             if seen < max(v for t, v in writes if t < started)]
    assert len(reads) > 60 and stale == []
    assert ok(url, query, {"id": recipe})["recipe"][0]["servings"] == 30
    assert cache_counts(url)["hit"] > before["hit"]  # readers were answered from the cache between writes


def test_criteria_apply_per_caller_on_cached_rows(recipe_book, users, recorder):
    url, ann, bob = recipe_book["url"], users("ann"), users("bob")
    ok(url, CREATE_INGREDIENT, {"name": "hidden truffle"})
    ok(url, CREATE_RECIPE, {"name": "ann's secret", "private": True}, headers=ann)
    time.sleep(SETTLE)

    def truffle(headers=None):
        return [i["name"] for i in ok(url, INGREDIENT, {"name": "hidden truffle"}, headers=headers)["ingredient"]]

    def secret(headers=None):
        return [r["name"] for r in ok(url, RECIPE, {"name": "ann's secret"}, headers=headers)["recipe"]]

    # one payload for every caller (no read rule on ingredients): one ask, the criterion per caller
    seen = []
    _, asks = asks_of(recorder, lambda: seen.extend([truffle(ann), truffle(), truffle(bob), truffle()]))
    assert seen == [["hidden truffle"], [], ["hidden truffle"], []] and asks["ingredient"] == 1
    # a read rule goes in the payload: each caller's answer is its own
    for _ in range(2):
        assert secret(ann) == ["ann's secret"] and secret(bob) == [] and secret() == []


def test_many_distinct_queries_keep_the_cache_within_its_bound(recipe_book, recorder):
    url = recipe_book["url"]
    first = 'query($name: String) { recipe(name: $name) { id } }'
    ok(url, first, {"name": "the first"})
    assert sum(asks_of(recorder, ok, url, first, {"name": "the first"})[1].values()) == 0
    long = "x" * 1000
    for n in range(300):  # ≥ 1,400 bytes each: more than the 256 KiB the cache may hold
        assert ok(url, first, {"name": f"{long} {n}"}) == {"recipe": []}
    # the first answer was dropped to make room (least recently used first): asked again
    assert asks_of(recorder, ok, url, first, {"name": "the first"})[1]["recipe"] == 1


@pytest.mark.brokers("rabbitmq")  # the proxy forwards to RabbitMQ's port
def test_without_the_feed_the_cache_is_emptied_and_bypassed(recipe_book, cloud, broker_url, users):
    """A second gateway reaches the broker through a proxy the test cuts: nothing is answered from its cache then."""
    ok(recipe_book["url"], CREATE_RECIPE, {"name": "through the proxy"}, headers=users("bob"))
    proxy = BrokerProxy()
    try:
        env = {**recipe_book["gateway"].env, "NAUTILUS_BROKER_URL": proxy.url(broker_url)}
        gateway = cloud.start(recipe_book["gateway"].settings, http=True, env=env)
        query = '{ recipe(name: "through the proxy") { name } }'
        found = {"recipe": [{"name": "through the proxy"}]}

        def answered_from_the_cache():
            hits = cache_counts(gateway.url)["hit"]
            return graphql(gateway.url, query)[1].get("data") == found and cache_counts(gateway.url)["hit"] > hits

        _eventually(answered_from_the_cache, 30)
        proxy.cut()
        time.sleep(0.5)  # the gateway notices the closed connections (at once, give or take a thread switch)
        status, body = graphql(gateway.url, query)
        assert status == 200 and body["data"] == {"recipe": None}  # not from the cache: the bus is away
        assert body["errors"][0]["extensions"]["code"] == "service_unavailable"
        proxy.restore()
        _eventually(answered_from_the_cache, 30)  # following the bus again
        gateway.stop()
    finally:
        proxy.close()
