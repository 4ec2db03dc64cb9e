"""nautilus.testing: the in-memory bus with each fault, ``handle``, and the pytest plugin's fixtures.

The property test's examples: ``NAUTILUS_FUZZ_EXAMPLES`` (25 by default).
"""
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from django.test import override_settings

from examples.recipe_book.recipes.models import Recipe
from examples.recipe_book.recipes.services import RecipeService
from nautilus.testing import MemoryBus, NoReply, handle
from nautilus.testing.plugin import (  # noqa: F401  (the plugin's fixtures, as pytest loads them when installed)
    nautilus_broker_proxy, nautilus_broker_url, nautilus_cloud, nautilus_databases, nautilus_memory_bus,
    nautilus_recorder, nautilus_service)
from nautilus_core.actions import Action
from nautilus_core.bus import connect
from nautilus_core.service import Service, on_action

from .conftest import GATEWAY, PROJECT_DIR, RECIPES

pytestmark = pytest.mark.django_db


def test_import_nautilus_does_not_load_the_gateway():
    """A model service imports nautilus; the gateway (schema builder, resolvers, tokens) stays out."""
    code = ("import sys, nautilus\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway', 'model_service', 'celery')))\n"
            "nautilus.ModelService\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gateway'))\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": RECIPES}
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split("\n")[:2] == ["[]", "[]"], done.stdout + done.stderr


@pytest.fixture
def memory(nautilus_memory_bus):
    nautilus_memory_bus.attach(RecipeService())
    return nautilus_memory_bus


def test_handle_calls_a_handler_directly():
    outcome = handle(RecipeService(), "create.recipe.pending", {"name": "soup"})
    assert outcome.action_type == "create.recipe.success" and outcome.payload["name"] == "soup"
    with pytest.raises(KeyError, match="does not handle"):
        handle(RecipeService(), "create.nothing.pending")


def test_ask_runs_the_real_message_through_the_service(memory):
    reply = memory.ask("create.recipe.pending", {"name": "soup", "servings": 2})
    assert reply.action_type == "create.recipe.success" and reply.payload["servings"] == 2
    assert Recipe.objects.get().name == "soup"
    broadcast, = memory.of_type("create.recipe.success")
    assert broadcast["correlation_id"] == reply.correlation_id and broadcast["sender"] == "recipe"
    read = memory.ask("read.recipe.pending", {"query": "{ all_models { name } }"})
    assert read.payload["data"] == {"all_models": [{"name": "soup"}]}
    refused = memory.ask("create.recipe.pending", {"servings": "many"})
    assert refused.action_type == "create.recipe.error" and set(refused.payload["details"]["fields"]) >= {"name"}


def test_a_duplicate_delivery_has_no_second_effect(memory):
    memory.duplicate("create.recipe.pending")
    reply = memory.ask("create.recipe.pending", {"name": "soup"})
    assert Recipe.objects.count() == 1
    outcomes = memory.of_type("create.recipe.success")
    assert len(outcomes) == 2, "the redelivery publishes the outbox again"
    assert {o["action_id"] for o in outcomes} == {reply.action_id}, "with the same ids"


def test_a_dropped_action_gets_no_answer(memory):
    memory.drop("create.recipe.pending")
    with pytest.raises(NoReply):
        memory.ask("create.recipe.pending", {"name": "lost"})
    assert not Recipe.objects.exists()
    assert memory.ask("create.recipe.pending", {"name": "next"}).action_type == "create.recipe.success"


def test_a_delayed_action_is_overtaken(memory):
    memory.delay("create.recipe.pending", deliveries=2)
    for name in ("first", "second", "third"):
        memory.publish("create.recipe.pending", {"name": name})
    assert memory.deliver() == 3
    assert list(Recipe.objects.order_by("pk").values_list("name", flat=True)) == ["second", "third", "first"]


def test_reordered_actions_are_all_applied_in_another_order(memory):
    names = [f"r{n}" for n in range(6)]
    memory.reorder(seed=3)
    for name in names:
        memory.publish("create.recipe.pending", {"name": name})
    memory.deliver()
    applied = list(Recipe.objects.order_by("pk").values_list("name", flat=True))
    assert sorted(applied) == names and applied != names


class Flaky(Service):
    """Fails unexpectedly ``failures`` times per action, then answers."""

    failures = 2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    @on_action("try.flaky.pending", record=False)
    def attempt(self, action):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls}")
        return {"calls": self.calls}


def test_an_unacknowledged_action_is_delivered_again_then_dead_lettered(nautilus_memory_bus):
    flaky = nautilus_memory_bus.attach(Flaky())
    assert nautilus_memory_bus.ask("try.flaky.pending").payload == {"calls": 3}
    flaky.calls, flaky.failures = 0, 100
    with override_settings(NAUTILUS={"MAX_RETRIES": 1}):
        reply = nautilus_memory_bus.ask("try.flaky.pending")
    assert reply.action_type == "try.flaky.error" and reply.payload["code"] == "internal_error"
    assert flaky.calls == 2
    letter, = nautilus_memory_bus.dead_letters
    assert letter["attempts"] == 2 and "ConnectionError" in letter["reason"]


def test_a_malformed_envelope_is_dead_lettered(memory):
    memory.client.publish(Action(action_type="create.recipe.pending", payload=["not", "an", "object"]))
    memory.deliver()
    letter, = memory.dead_letters
    assert "must be a JSON object" in letter["reason"]


# -- the plugin's process fixtures, on RabbitMQ and PostgreSQL ------------------------------------


def test_service_recorder_and_broker_proxy_fixtures(nautilus_service, nautilus_recorder, nautilus_broker_url,
                                                    nautilus_broker_proxy):
    nautilus_service(RECIPES)
    recorder = nautilus_recorder("create.recipe.*")
    through_proxy = connect(nautilus_broker_proxy.url(nautilus_broker_url), sender="test")
    try:
        reply = through_proxy.ask("create.recipe.pending", {"name": "soup"}, timeout=20)
        assert reply.action_type == "create.recipe.success"
        recorder.wait_for(lambda e: e["action_type"] == "create.recipe.success")
    finally:
        through_proxy.close()
    nautilus_broker_proxy.cut()
    import socket

    with socket.create_connection(("127.0.0.1", nautilus_broker_proxy.port), timeout=5) as cut:
        cut.settimeout(5)
        assert cut.recv(1) == b"", "a cut proxy refuses the broker"
    nautilus_broker_proxy.restore()


def test_cloud_fixture(nautilus_cloud):
    cloud = nautilus_cloud(RECIPES, gateway=GATEWAY)
    status, body = cloud.query("{ recipe { name } }")
    assert status == 200 and body == {"data": {"recipe": []}}, body


# -- property: whatever the faults, each action that arrives is applied exactly once --------------

FAULTS = st.sampled_from(["none", "duplicate", "drop", "delay", "reorder"])


@settings(max_examples=int(os.environ.get("NAUTILUS_FUZZ_EXAMPLES", 25)), deadline=None)
@given(st.lists(st.tuples(st.text("abcdefgh", min_size=1, max_size=8), FAULTS), max_size=8))
def test_each_create_that_arrives_is_applied_once(plan):
    from nautilus_core.models import HandledAction

    Recipe.objects.all().delete()
    HandledAction.objects.all().delete()
    with MemoryBus(RecipeService()) as memory:
        for n, (name, fault) in enumerate(plan):
            pattern = "create.recipe.pending"
            if fault == "duplicate":
                memory.duplicate(pattern)
            elif fault == "drop":
                memory.drop(pattern)
            elif fault == "delay":
                memory.delay(pattern, deliveries=2)
            elif fault == "reorder":
                memory.reorder(seed=n)
            memory.publish(pattern, {"name": f"{n}-{name}"})
            memory.deliver()
        memory.deliver()
        expected = sorted(f"{n}-{name}" for n, (name, fault) in enumerate(plan) if fault != "drop")
        assert sorted(Recipe.objects.values_list("name", flat=True)) == expected
        assert len({e["action_id"] for e in memory.of_type("create.recipe.success")}) == len(expected)
