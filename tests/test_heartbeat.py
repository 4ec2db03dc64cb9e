"""Departed services: heartbeats, unavailable at once, dropped from the schema, back when they return.

A real gateway (runservice) and workers on RabbitMQ and PostgreSQL; services beat every second here.
"""
import json
import time

import pytest

from nautilus_core.actions import ANNOUNCE
from nautilus_core.testing import dead_letters, manage

from .conftest import GATEWAY, INGREDIENTS, graphql

BEAT = {"NAUTILUS_HEARTBEAT": "1"}


@pytest.fixture(scope="module")
def gateway(cloud):
    env = {**cloud.env(GATEWAY), **BEAT, "NAUTILUS_ASK_TIMEOUT": "10", "NAUTILUS_HEARTBEATS_MISSED": "2",
           "NAUTILUS_DEPARTED_AFTER": "8"}
    return cloud.start(GATEWAY, http=True, env=env)


def wait(predicate, timeout=30, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s")


def services_of(gateway):
    status, body = graphql(gateway.url, "{ _services }")
    return set(body["data"]["_services"]) if status == 200 and body.get("data") else set()


def index_of(gateway):
    import urllib.request

    with urllib.request.urlopen(f"{gateway.url}/?format=json", timeout=5) as response:
        return {entry["name"]: entry for entry in json.loads(response.read())["services"]}


def test_a_silent_service_is_unavailable_at_once_then_departs_then_returns(cloud, gateway):
    env = {**cloud.env(INGREDIENTS), **BEAT}
    worker = cloud.start(INGREDIENTS, env=env)
    wait(lambda: "ingredient" in services_of(gateway))
    status, body = graphql(gateway.url, "{ ingredient { pk } }")
    assert status == 200 and "errors" not in body, body
    assert index_of(gateway)["ingredient"]["state"] == "up"

    worker.kill()  # no goodbye: a crash, a lost host
    wait(lambda: index_of(gateway).get("ingredient", {}).get("state") == "unavailable", timeout=15)
    started = time.monotonic()
    status, body = graphql(gateway.url, "{ ingredient { pk } }")
    took = time.monotonic() - started
    assert body["errors"][0]["extensions"]["code"] == "service_unavailable", body
    assert "has not announced itself" in body["errors"][0]["message"]
    assert took < 2, f"an unavailable service is reported at once, not after the 10 s ask timeout ({took:.1f}s)"
    status_line = manage(GATEWAY, "cloud", "status", f"--gateway={gateway.url}", env=cloud.env(GATEWAY),
                         check=False)
    assert status_line.returncode == 0, status_line.stdout + status_line.stderr
    assert "unavailable" in status_line.stdout

    wait(lambda: "ingredient" not in services_of(gateway), timeout=20)  # departed: gone from the schema
    status, body = graphql(gateway.url, "{ ingredient { pk } }")
    assert status in (200, 400) and "Cannot query field 'ingredient'" in json.dumps(body), body

    cloud.start(INGREDIENTS, env=env)  # it comes back on the same database
    wait(lambda: "ingredient" in services_of(gateway))
    status, body = graphql(gateway.url, "{ ingredient { pk } }")
    assert status == 200 and "errors" not in body, body


@pytest.mark.parametrize("summary, reason", [
    # pass the shape checks, but its type would replace the schema's root type / is no GraphQL name
    ({"name": "query", "pk": "id", "fields": [{"name": "name", "type": "String"}], "mutations": [], "version": "x"},
     "the schema cannot be built"),
    ({"name": "recéta", "pk": "id", "fields": [{"name": "name", "type": "String"}], "mutations": [],
      "version": "z"}, "the schema cannot be built"),
    ({"name": "ghost", "pk": "id", "fields": [], "mutations": [], "version": "y", "heartbeat": "often"},
     "heartbeat"),
])
def test_an_announcement_that_cannot_be_served_is_refused_with_its_reason(gateway, bus, broker_url, summary,
                                                                         reason):
    wait(lambda: graphql(gateway.url, "{ _services }")[0] == 200)  # the gateway answers
    bus.publish(ANNOUNCE, summary)
    letter = wait(lambda: next((d for d in dead_letters(broker_url) if reason in d.get("reason", "")
                                and d.get("body", {}).get("payload", {}).get("name") == summary["name"]), None),
                  timeout=15)
    assert "announcement refused" in letter["reason"]
    time.sleep(1.5)  # the registry is re-read at least every second
    assert summary["name"] not in services_of(gateway)
    status, body = graphql(gateway.url, "{ _services }")
    assert status == 200 and "errors" not in body


def test_a_fake_service_announced_once_does_not_break_cloud_status(cloud, gateway, bus):
    bus.publish(ANNOUNCE, {"name": "phantom", "pk": "id", "fields": [{"name": "name", "type": "String"}],
                           "mutations": [], "version": "p1", "heartbeat": 1})
    wait(lambda: "phantom" in services_of(gateway))
    wait(lambda: index_of(gateway)["phantom"]["state"] == "unavailable", timeout=15)
    result = manage(GATEWAY, "cloud", "status", f"--gateway={gateway.url}", env=cloud.env(GATEWAY), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "phantom" in result.stdout and "unavailable" in result.stdout
