"""ConnectionService: generated join models and cascade deletes, with real workers on RabbitMQ and PostgreSQL."""
import types
import uuid

import pytest
from django.test import override_settings

from connection_service.join import Side, sides
from nautilus_core.actions import ANNOUNCE, ROLL_CALL
from nautilus_core.brokers import connection as broker_connection
from nautilus_core.checks import check_service
from nautilus_core.service import ServiceMisconfigured
from nautilus_core.testing import ServiceProcess, dead_letters, manage

from .conftest import INGREDIENTS

pytestmark = pytest.mark.brokers("rabbitmq", "redis")

CONNECTION = "examples.recipe_book.ingredients_connection.settings"
FOLLOWS = "tests.follows.settings"


@pytest.fixture(scope="module")
def ingredient_service(cloud):
    return cloud.start(INGREDIENTS)


@pytest.fixture(scope="module")
def connection(cloud):
    """The ``ingredients`` worker, with its env, so a test can stop it and start another on the same database."""
    env = cloud.env(CONNECTION)
    return types.SimpleNamespace(env=env, process=cloud.start(CONNECTION, env=env))


@pytest.fixture(scope="module")
def follows(cloud):
    return cloud.start(FOLLOWS)


cloud_of_recipes = pytest.mark.usefixtures("recipe_service", "ingredient_service", "connection")


# -- helpers -------------------------------------------------------------------------------


def ask(bus, action_type, payload, timeout=10):
    return bus.ask(action_type, payload, timeout=timeout)


def created(bus, name, payload):
    reply = ask(bus, f"create.{name}.pending", payload)
    assert reply.action_type == f"create.{name}.success", reply.payload
    return reply.payload


def deleted(bus, name, id_):
    reply = ask(bus, f"delete.{name}.pending", {"id": id_})
    assert reply.action_type == f"delete.{name}.success", reply.payload
    assert reply.payload["id"] == id_  # with the row as it was (test_model_service_bus)


def rows(bus, service, column, value, fields=("pk", "recipe", "ingredient")):
    """The connection rows whose ``column`` is ``value``, read through the bus."""
    query = f"query($v: ID) {{ all_models({column}: $v) {{ {' '.join(fields)} }} }}"
    reply = ask(bus, f"read.{service}.pending", {"query": query, "variables": {"v": str(value)}})
    assert reply.action_type == f"read.{service}.success", reply.payload
    assert reply.payload["errors"] == []
    return reply.payload["data"]["all_models"]


def recipe_with_ingredients(bus, n=2):
    """A new recipe connected to ``n`` new ingredients; return (recipe id, ingredient ids, connection ids)."""
    tag = uuid.uuid4().hex[:8]
    recipe = created(bus, "recipe", {"name": f"stew-{tag}"})["id"]
    ingredients = [created(bus, "ingredient", {"name": f"leek-{tag}-{i}"})["id"] for i in range(n)]
    # ids as the services reply them (integers) and as strings: both are kept as strings
    links = [created(bus, "ingredients", {"recipe": recipe, "ingredient": str(i)}) for i in ingredients]
    assert all(link["recipe"] == str(recipe) for link in links)
    return recipe, ingredients, [link["id"] for link in links]


def removed_ids(recorder, count, timeout=15):
    recorder.wait_for(lambda e: len(recorder.of_type("delete.ingredients.success")) >= count, timeout)
    return sorted(e["payload"]["id"] for e in recorder.of_type("delete.ingredients.success"))


# -- over the bus --------------------------------------------------------------------------


@cloud_of_recipes
def test_summary_announces_the_connection(bus, recorder):
    announcements = recorder(ANNOUNCE)
    bus.publish(ROLL_CALL, {})
    summary = announcements.wait_for(lambda e: e["payload"].get("name") == "ingredients")["payload"]
    assert summary["connection"] == {"from": {"service": "recipe"}, "to": {"service": "ingredient"}}
    # the columns hold the linked rows' ids: ID, as the primary key
    assert [(f["name"], f["type"], f["required"]) for f in summary["fields"]] == [
        ("id", "ID", True), ("recipe", "ID", True), ("ingredient", "ID", True)]
    assert [m["name"] for m in summary["mutations"]] == ["createIngredients", "updateIngredients", "deleteIngredients"]
    assert summary["mutations"][0]["event"] == "create.ingredients.pending"


@cloud_of_recipes
def test_deleting_a_recipe_or_an_ingredient_removes_its_connections(bus, recorder):
    events = recorder("delete.ingredients.success")
    recipe, ingredients, links = recipe_with_ingredients(bus)
    other = created(bus, "recipe", {"name": "other"})["id"]
    other_link = created(bus, "ingredients", {"recipe": other, "ingredient": ingredients[0]})["id"]

    deleted(bus, "recipe", recipe)
    assert removed_ids(events, 2) == sorted(links)
    # each cascade outcome carries the link as it was, like every delete outcome
    assert sorted((e["payload"]["id"], e["payload"]["recipe"]) for e in events.envelopes) == [
        (link, str(recipe)) for link in sorted(links)]
    assert all(set(e["payload"]) == {"id", "recipe", "ingredient"} for e in events.envelopes)
    assert rows(bus, "ingredients", "recipe", recipe) == []
    assert [r["pk"] for r in rows(bus, "ingredients", "recipe", other)] == [str(other_link)]  # untouched
    assert all(e["sender"] == "ingredients" for e in events.envelopes)

    deleted(bus, "ingredient", ingredients[0])  # the "to" side cascades too
    assert removed_ids(events, 3) == sorted([*links, other_link])
    assert rows(bus, "ingredients", "ingredient", ingredients[0]) == []


@cloud_of_recipes
def test_deleting_a_row_without_connections_is_not_an_error(bus, recorder, broker_url):
    dead_letters(broker_url)
    events = recorder("delete.ingredients.success")
    lonely = created(bus, "recipe", {"name": "lonely"})["id"]
    deleted(bus, "recipe", lonely)
    rows(bus, "ingredients", "recipe", lonely)  # answered after the cascade: one queue, in order
    assert events.drain(0.5) == []
    assert [letter for letter in dead_letters(broker_url) if letter.get("service") == "ingredients"] == []


@cloud_of_recipes
def test_connections_are_unique_and_validated(bus):
    recipe, ingredients, _ = recipe_with_ingredients(bus, n=1)
    again = ask(bus, "create.ingredients.pending", {"recipe": str(recipe), "ingredient": ingredients[0]})
    assert again.action_type == "create.ingredients.error"
    assert again.payload["code"] == "invalid"
    missing = ask(bus, "create.ingredients.pending", {"recipe": recipe})
    assert missing.payload["details"]["fields"] == {"ingredient": ["This field is required."]}


@cloud_of_recipes
def test_cascade_reaches_a_connection_worker_that_was_stopped(bus, recorder, connection, cloud, broker_url):
    events = recorder("delete.ingredients.success")
    recipes = recorder("delete.recipe.success")
    recipe, _, links = recipe_with_ingredients(bus, n=3)

    connection.process.stop()
    deleted(bus, "recipe", recipe)
    recipes.wait_for(lambda e: e["payload"]["id"] == recipe)
    with broker_connection(broker_url) as conn:  # the durable queue keeps the event for the absent worker
        _, waiting, consumers = conn.default_channel.queue_declare("nautilus.ingredients", passive=True)
    assert (waiting, consumers) == (1, 0)
    assert events.drain(0.5) == []

    connection.process = ServiceProcess(CONNECTION, connection.env, log_dir=cloud.log_dir).start()
    cloud.processes.append(connection.process)
    connection.process.wait_ready()
    assert removed_ids(events, 3) == sorted(links)
    assert rows(bus, "ingredients", "recipe", recipe) == []


@cloud_of_recipes
def test_malformed_cascade_payloads_are_dead_lettered_and_the_worker_goes_on(bus, broker_url, recorder):
    dead_letters(broker_url)
    for payload in ({}, {"id": None}, {"id": [1]}, {"id": True}, {"id": ""}, {"pk": 3}):
        bus.publish("delete.recipe.success", payload)
    bus.app.send_task("nautilus.action", args=[{"action_type": "delete.recipe.success", "payload": "7"}],
                      exchange=bus.exchange, routing_key="delete.recipe.success", declare=[bus.exchange])

    # still consuming: a good cascade after the bad ones works
    events = recorder("delete.ingredients.success")
    recipe, _, links = recipe_with_ingredients(bus, n=1)
    deleted(bus, "recipe", recipe)
    assert removed_ids(events, 1) == links

    letters = [letter for letter in dead_letters(broker_url) if letter.get("service") == "ingredients"]
    reasons = [letter["reason"] for letter in letters]
    assert len(letters) == 7, reasons
    assert sum('must carry {"id": <string or integer>}' in r for r in reasons) == 6
    assert any("must be a JSON object, not str" in r for r in reasons)


@cloud_of_recipes
def test_a_redelivered_cascade_has_no_second_effect(bus, recorder):
    recipe, ingredients, links = recipe_with_ingredients(bus, n=1)
    events = recorder("delete.ingredients.success")
    cascade = bus.publish("delete.recipe.success", {"id": recipe})
    assert removed_ids(events, 1) == links
    # the same recipe id is connected again; the same action delivered again must not remove it
    relinked = created(bus, "ingredients", {"recipe": recipe, "ingredient": ingredients[0]})["id"]
    bus.publish(cascade)
    assert [r["pk"] for r in rows(bus, "ingredients", "recipe", recipe)] == [str(relinked)]
    assert len(events.of_type("delete.ingredients.success")) == 1


@pytest.mark.usefixtures("follows")
def test_a_service_connected_to_itself(bus, recorder):
    events = recorder("delete.follows.success")
    announcements = recorder(ANNOUNCE)
    a, b, c = (f"user-{uuid.uuid4().hex[:6]}" for _ in range(3))  # non-integer ids
    ids = {(f, t): created(bus, "follows", {"follower": f, "followed": t})["id"]
           for f, t in ((a, b), (b, a), (c, b), (a, c))}

    bus.publish("delete.user.success", {"id": b})  # b follows a, and a and c follow b: all three go
    events.wait_for(lambda e: len(events.of_type("delete.follows.success")) >= 3, 15)
    assert sorted(e["payload"]["id"] for e in events.envelopes) == sorted(
        ids[pair] for pair in ((a, b), (b, a), (c, b)))
    fields = ("pk", "follower", "followed")
    assert rows(bus, "follows", "follower", a, fields) == [{"pk": str(ids[a, c]), "follower": a, "followed": c}]
    assert rows(bus, "follows", "followed", b, fields) == []

    bus.publish(ROLL_CALL, {})
    summary = announcements.wait_for(lambda e: e["payload"].get("name") == "follows")["payload"]
    assert summary["connection"] == {"from": {"service": "user", "field": "follower"},
                                     "to": {"service": "user", "field": "followed"}}


# -- declaration, checks, migrations (in-process and manage.py) ------------------------------


@pytest.mark.parametrize("service, check_id", [
    ("tests.follows.misconfigured.SameServiceUnnamed", "nautilus.E020"),
    ("tests.follows.misconfigured.NoTarget", "nautilus.E021"),
    ("tests.follows.misconfigured.Recipe", "nautilus.E022"),
    ("tests.follows.services.Follows", "nautilus.E023"),  # its app is not installed in these settings
    ("tests.follows.misconfigured.WrongModel", "nautilus.E024"),
])
def test_misconfigured_connections_are_system_check_errors(service, check_id):
    with override_settings(NAUTILUS={"SERVICE": service}):
        errors = check_service()
    assert [e.id for e in errors] == [check_id], [e.msg for e in errors]


def test_declarations():
    assert sides("recipe", ("ingredient",)) == (Side("recipe"), Side("ingredient"))
    assert sides(("user", "follower"), ("user", "followed"))[1].column == "followed"
    assert sides(("User",), ("user",), related_names=("a", "b")) == (Side("user", "a"), Side("user", "b"))
    for from_, to, check_id in [(("user", "x"), ("x",), "nautilus.E020"), (None, ("a",), "nautilus.E021"),
                                (("a", "b", "c"), ("d",), "nautilus.E021"), (("recipe-book",), ("a",), "nautilus.E022"),
                                (("a", "id"), ("b",), "nautilus.E022")]:
        with pytest.raises(ServiceMisconfigured) as raised:
            sides(from_, to)
        assert raised.value.check_id == check_id


@pytest.mark.parametrize("settings, app", [(CONNECTION, "ingredients_connection"), (FOLLOWS, "follows")])
def test_generated_models_have_their_migrations(cloud, settings, app):
    env = cloud.env(settings)
    assert manage(settings, "check", env=env).returncode == 0
    result = manage(settings, "makemigrations", app, "--check", "--dry-run", env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
