"""``/metrics`` (issue 18): what a service and the gateway count, on RabbitMQ and PostgreSQL.

Counters are read as differences between two scrapes, so actions of other tests do not count.
"""
import re
import time
import urllib.request
import uuid

import pytest
from kombu import Connection, Producer

from nautilus_core.bus import actions_exchange

from .conftest import GATEWAY, RECIPES, graphql

N = 7


def scrape(url):
    """``{(name, frozenset(labels)): value}`` of a ``/metrics`` page."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r'^(\w+)(?:\{(.*)\})? (\S+)$', line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def recipe(cloud):
    return cloud.start(RECIPES, http=True)  # runservice: HTTP and a worker


@pytest.fixture(scope="module")
def gateway(cloud, recipe):
    gateway = cloud.start(GATEWAY, http=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the roll call was answered
        status, body = graphql(gateway.url, "{ _services }")
        if status == 200 and "recipe" in body["data"]["_services"]:
            return gateway
        time.sleep(0.2)
    pytest.fail(f"the gateway did not learn the recipe service: {body}")


def test_a_service_counts_the_actions_it_handled(recipe, bus):
    before = scrape(recipe.url)
    for i in range(N):
        assert bus.ask("create.recipe.pending", {"name": f"counted {i}"}, timeout=10).action_type.endswith("success")
    refused = bus.ask("create.recipe.pending", {"servings": 2}, timeout=10)  # no name: an .error answer
    assert refused.action_type == "create.recipe.error"
    after = scrape(recipe.url)
    labels = {"service": "recipe", "action_type": "create.recipe.pending"}
    assert delta(before, after, "nautilus_actions_handled_total", outcome="success", **labels) == N
    assert delta(before, after, "nautilus_actions_handled_total", outcome="error", **labels) == 1
    assert delta(before, after, "nautilus_action_duration_seconds_count", **labels) == N + 1
    assert delta(before, after, "nautilus_action_duration_seconds_bucket", le="+Inf", **labels) == N + 1
    assert delta(before, after, "nautilus_action_duration_seconds_sum", **labels) > 0
    # the HTTP server and the worker are two processes: one page holds what both counted
    assert value(after, "nautilus_http_requests_total", service="recipe", method="GET", status="200") >= 1


def test_the_gateway_counts_its_asks(gateway, recipe):
    query = "query($name: String) { recipe(name: $name) { name } }"  # one text, a read of its own each time
    before_gateway, before_recipe = scrape(gateway.url), scrape(recipe.url)
    for i in range(N):
        status, body = graphql(gateway.url, query, {"name": f"counted {i}"})
        assert status == 200 and "errors" not in body, body
    after_gateway, after_recipe = scrape(gateway.url), scrape(recipe.url)
    asks = {"service": "api", "action_type": "read.recipe.pending", "outcome": "success"}
    assert delta(before_gateway, after_gateway, "nautilus_ask_duration_seconds_count", **asks) == N
    assert delta(before_gateway, after_gateway, "nautilus_ask_duration_seconds_bucket", le="+Inf", **asks) == N
    assert value(after_gateway, "nautilus_asks_in_flight", service="api") == 0
    assert delta(before_gateway, after_gateway, "nautilus_http_requests_total",
                 service="api", method="POST", status="200") == N
    # the same query text: parsed once, then found in the document cache
    assert delta(before_gateway, after_gateway, "nautilus_graphql_document_cache_total",
                 service="api", result="hit") >= N - 1
    assert delta(before_recipe, after_recipe, "nautilus_actions_handled_total", service="recipe",
                 action_type="read.recipe.pending", outcome="success") == N
    assert sum(delta(before_gateway, after_gateway, "nautilus_gateway_cache_total", service="api", result=result)
               for result in ("miss", "bypass")) == N  # kept, unless a change of recipes came meanwhile
    # the same read again: answered from the gateway's read cache, not asked
    assert graphql(gateway.url, query, {"name": f"counted {N - 1}"})[0] == 200
    again = scrape(gateway.url)
    assert delta(after_gateway, again, "nautilus_gateway_cache_total", service="api", result="hit") == 1
    assert delta(after_gateway, again, "nautilus_ask_duration_seconds_count", **asks) == 0


def test_a_malformed_message_counts_as_a_dead_letter(recipe, broker_url):
    before = scrape(recipe.url)
    with Connection(broker_url) as connection:
        exchange = actions_exchange("nautilus.actions")
        Producer(connection.channel(), exchange=exchange).publish(
            b"\xff not json", routing_key="create.recipe.pending", content_type="application/json",
            content_encoding="utf-8", headers={"task": "nautilus.action", "id": str(uuid.uuid4())},
            declare=[exchange])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        after = scrape(recipe.url)
        if delta(before, after, "nautilus_dead_letters_total", service="recipe", layer="bytes") >= 1:
            break
        time.sleep(0.2)
    assert delta(before, after, "nautilus_dead_letters_total", service="recipe", layer="bytes") == 1
    assert "action recipe create.recipe.pending dead_lettered 0.0ms trace=- layer=bytes" in recipe.log()


def test_metrics_are_open_and_hold_nothing_private(recipe, bus):
    bus.ask("create.recipe.pending", {"name": "secret sauce"}, timeout=10)
    with urllib.request.urlopen(f"{recipe.url}/metrics", timeout=10) as response:  # no token: scrapers have none
        page = response.read().decode()
    assert "secret sauce" not in page and "tests-only" not in page
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", page)  # no action or correlation ids
