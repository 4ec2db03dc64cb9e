"""The embedded default: no broker server, no database server (a file-backed bus and SQLite)."""
import uuid

import pytest

from nautilus_core.actions import Action
from nautilus_core.bus import connect
from nautilus_core.settings import embedded_transport_options
from nautilus_core.testing import ServiceProcess, manage

from .conftest import INGREDIENTS, RECIPES


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    env = {"NAUTILUS_VAR_DIR": str(tmp_path), "NAUTILUS_DEMO": "1"}
    for name in ("NAUTILUS_BROKER_URL", "DATABASE_URL", "NAUTILUS_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    bus = connect("filesystem://", sender="test", transport_options=embedded_transport_options(tmp_path))
    yield env, bus
    bus.close()


def test_two_services_answer_on_the_embedded_bus(embedded, tmp_path):
    env, bus = embedded
    processes = []
    try:
        for settings in (RECIPES, INGREDIENTS):
            manage(settings, "migrate", "--verbosity=0", env=env)
            processes.append(ServiceProcess(settings, env, log_dir=tmp_path).start())
        for process in processes:
            process.wait_ready()

        recipe = bus.ask("create.recipe.pending", {"name": "embedded soup"}, timeout=10)
        assert recipe.action_type == "create.recipe.success", recipe.payload
        salt = bus.ask("create.ingredient.pending", {"name": "salt", "calories_per_100g": "0"}, timeout=10)
        assert salt.payload == {"id": 1, "name": "salt", "calories_per_100g": "0.00"}
        read = bus.ask("read.recipe.pending", {"query": "{ all_models { name } }"}, timeout=10)
        assert read.payload["data"] == {"all_models": [{"name": "embedded soup"}]}
        assert bus.ask("create.ingredient.pending", {"name": "salt"}, timeout=10).payload["details"]["fields"] == {
            "name": ["Ingredient with this Name already exists."]}

        # an action delivered twice (as after a redelivery) is applied once and answered the same
        twice = Action("create.recipe.pending", {"name": "twice"}, correlation_id=str(uuid.uuid4()), sender="test")
        replies = bus._reply_listener()
        future = replies.expect(twice.correlation_id)
        bus.publish(twice, reply_to=replies.queue.name)
        first = future.result(10)
        future = replies.expect(twice.correlation_id)
        bus.publish(twice, reply_to=replies.queue.name)
        assert future.result(10).payload == first.payload and first.action_type == "create.recipe.success"
        read = bus.ask("read.recipe.pending", {"query": '{ all_models(name: "twice") { pk } }'}, timeout=10)
        assert len(read.payload["data"]["all_models"]) == 1
    finally:
        for process in processes:
            process.stop()
    # each service kept its own SQLite file
    assert (tmp_path / "recipes.sqlite3").exists() and (tmp_path / "ingredients.sqlite3").exists()
