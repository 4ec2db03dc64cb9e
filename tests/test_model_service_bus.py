"""A ModelService driven through the bus: a real worker on RabbitMQ and PostgreSQL."""
import uuid

import pytest
from kombu import Producer, Queue, binding

from nautilus_core.actions import ANNOUNCE, ROLL_CALL
from nautilus_core.brokers import connection as broker_connection
from nautilus_core.bus import AskTimeout, NoHandler, actions_exchange
from nautilus_core.testing import dead_letters

pytestmark = [pytest.mark.usefixtures("recipe_service"), pytest.mark.brokers("rabbitmq", "redis")]

READ_ALL = "query($name: String) { all_models(name: $name) { pk name servings vegetarian } }"


def ask(bus, action_type, payload, timeout=10):
    return bus.ask(action_type, payload, timeout=timeout)


def read(bus, query, **variables):
    reply = ask(bus, "read.recipe.pending", {"query": query, "variables": variables})
    assert reply.action_type == "read.recipe.success", reply.payload
    assert reply.payload["errors"] == []
    return reply.payload["data"]["all_models"]


def test_create_read_update_delete(bus, recorder):
    outcomes = recorder("*.recipe.success")
    name = f"soup-{uuid.uuid4().hex[:6]}"

    created = ask(bus, "create.recipe.pending", {"name": name, "servings": 4})
    assert created.action_type == "create.recipe.success"
    assert created.payload["name"] == name and created.payload["servings"] == 4
    assert created.payload["vegetarian"] is False and created.payload["created_at"]
    recipe_id = created.payload["id"]

    assert read(bus, READ_ALL, name=name) == [
        {"pk": str(recipe_id), "name": name, "servings": 4, "vegetarian": False}]

    updated = ask(bus, "update.recipe.pending", {"id": recipe_id, "servings": 6, "vegetarian": True})
    assert updated.action_type == "update.recipe.success"
    assert updated.payload["servings"] == 6 and updated.payload["name"] == name

    deleted = ask(bus, "delete.recipe.pending", {"id": recipe_id})
    assert deleted.action_type == "delete.recipe.success"
    assert deleted.payload == updated.payload  # the row as it was just before the delete, with its id
    assert read(bus, READ_ALL, name=name) == []

    # changes are also published for everyone who listens (cascades); reads are not
    outcomes.wait_for(lambda e: e["action_type"] == "delete.recipe.success")
    assert [e["action_type"] for e in outcomes.envelopes] == [
        "create.recipe.success", "update.recipe.success", "delete.recipe.success"]
    assert outcomes.envelopes[2]["payload"] == {**updated.payload, "id": recipe_id}
    assert all(e["sender"] == "recipe" for e in outcomes.envelopes)


def test_reply_envelope_follows_the_protocol(bus):
    reply = ask(bus, "create.recipe.pending", {"name": "protocol"})
    envelope = reply.to_dict()
    assert set(envelope) == {"action_type", "payload", "action_id", "correlation_id", "sender", "sent_at",
                             "traceparent", "caused_by"}
    uuid.UUID(envelope["action_id"]), uuid.UUID(envelope["correlation_id"])
    assert envelope["caused_by"] != envelope["action_id"] and len(envelope["traceparent"]) == 55


def test_all_missing_required_fields_unknown_fields_and_wrong_types_at_once(bus):
    reply = ask(bus, "create.recipe.pending", {"nme": "typo", "servings": "four", "vegetarian": 1})
    assert reply.action_type == "create.recipe.error"
    assert reply.payload["code"] == "invalid"
    assert reply.payload["details"]["fields"] == {
        "name": ["This field is required."],
        "nme": ["Unknown field."],
        "servings": ["Expected an integer, got a string."],
        "vegetarian": ["Expected a boolean, got an integer."],
    }
    assert "name: This field is required." in reply.payload["message"]


def test_django_validation_is_reported(bus):
    reply = ask(bus, "create.recipe.pending", {"name": "x" * 201, "servings": -1})
    assert reply.action_type == "create.recipe.error"
    fields = reply.payload["details"]["fields"]
    assert "at most 200 characters" in fields["name"][0]
    assert "greater than or equal to 0" in fields["servings"][0]


@pytest.mark.parametrize("method", ["update", "delete"])
def test_missing_row(bus, method):
    reply = ask(bus, f"{method}.recipe.pending", {"id": 987654})
    assert reply.action_type == f"{method}.recipe.error"
    assert reply.payload["code"] == "not_found"
    assert reply.payload["message"] == "There is no recipe with id 987654."


@pytest.mark.parametrize("method", ["update", "delete"])
def test_update_and_delete_need_an_id(bus, method):
    reply = ask(bus, f"{method}.recipe.pending", {"name": "no id"})
    assert reply.action_type == f"{method}.recipe.error"
    assert reply.payload["details"]["fields"] == {"id": ["This field is required."]}


def test_a_failed_update_changes_nothing(bus):
    created = ask(bus, "create.recipe.pending", {"name": "stable", "servings": 2}).payload
    reply = ask(bus, "update.recipe.pending", {"id": created["id"], "servings": 3, "name": None})
    assert reply.action_type == "update.recipe.error"
    assert read(bus, READ_ALL, name="stable")[0]["servings"] == 2


def test_payload_must_be_an_object(bus):
    # sent as a non-Python client could: the bus's own ask always builds a valid envelope
    envelope = {"action_type": "create.recipe.pending", "payload": ["a", "list"], "action_id": str(uuid.uuid4())}
    reply = _ask_raw(bus, envelope)
    assert reply.action_type == "create.recipe.error"
    assert reply.payload["code"] == "malformed_action"
    assert "must be a JSON object, not list" in reply.payload["message"]


def _ask_raw(bus, envelope, timeout=10):
    """Ask with a hand-made envelope (the bus's own ask always builds a valid one)."""
    replies = bus._reply_listener()
    correlation_id = str(uuid.uuid4())
    envelope = {**envelope, "correlation_id": correlation_id}
    future = replies.expect(correlation_id)
    with bus.app.producer_or_acquire() as producer:
        bus.app.send_task("nautilus.action", args=[envelope], exchange=bus.exchange,
                          routing_key=envelope.get("action_type") or "create.recipe.pending",
                          declare=[bus.exchange], reply_to=replies.queue.name, producer=producer)
    return future.result(timeout)


def test_read_with_a_bad_query_is_an_error(bus):
    reply = ask(bus, "read.recipe.pending", {"query": "{ all_models { no_such_field } }"})
    assert reply.action_type == "read.recipe.error"
    assert reply.payload["code"] == "invalid_query"
    assert "no_such_field" in reply.payload["message"]
    assert reply.payload["details"]["errors"][0]["locations"]

    reply = ask(bus, "read.recipe.pending", {"query": 42})
    assert reply.action_type == "read.recipe.error"


def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(bus, broker_url):
    dead_letters(broker_url)  # start from an empty dead-letter queue
    exchange = actions_exchange("nautilus.actions")
    with broker_connection(broker_url) as conn:
        producer = Producer(conn.channel(), exchange=exchange)
        # not JSON, but claiming to be
        producer.publish(b"{not json", routing_key="create.recipe.pending", content_type="application/json",
                         content_encoding="utf-8", headers={"task": "nautilus.action", "id": str(uuid.uuid4())},
                         declare=[exchange])
        # JSON, but not a Celery task message
        producer.publish({"action_type": "create.recipe.pending", "payload": {}},
                         routing_key="create.recipe.pending", serializer="json")
        # a pickled message: not on the JSON-only bus
        producer.publish({"x": 1}, routing_key="create.recipe.pending", serializer="pickle",
                         headers={"task": "nautilus.action", "id": str(uuid.uuid4())})
    # envelopes without an action type, or of a type the service does not handle
    bus.app.send_task("nautilus.action", args=[{"payload": {"name": "x"}}], exchange=bus.exchange,
                      routing_key="create.recipe.pending", declare=[bus.exchange])
    bus.app.send_task("nautilus.action", args=["a string"], exchange=bus.exchange,
                      routing_key="create.recipe.pending", declare=[bus.exchange])
    bus.app.send_task("nautilus.action", args=[{"action_type": "explode.recipe.pending", "payload": {}}],
                      exchange=bus.exchange, routing_key="create.recipe.pending", declare=[bus.exchange])

    # the worker still answers
    assert ask(bus, "create.recipe.pending", {"name": "after the storm"}).action_type == "create.recipe.success"

    letters = dead_letters(broker_url)
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == 6, reasons
    assert all(letter["service"] == "recipe" for letter in letters)
    assert any("undecodable" in r or "invalid message" in r for r in reasons)
    assert any("no action_type" in r for r in reasons)
    assert any("must be a JSON object, not str" in r for r in reasons)
    assert any("does not handle explode.recipe.pending" in r for r in reasons)
    assert any("not a nautilus action" in r or "invalid message" in r for r in reasons)
    assert any("{not json" in letter["body"] for letter in letters)  # the original body is kept


def test_redelivered_action_has_no_second_effect_and_gets_the_same_reply(bus):
    action_id = str(uuid.uuid4())
    name = f"once-{action_id[:6]}"
    first = _ask_raw(bus, {"action_type": "create.recipe.pending", "payload": {"name": name}, "action_id": action_id})
    again = _ask_raw(bus, {"action_type": "create.recipe.pending", "payload": {"name": name}, "action_id": action_id})
    assert first.action_type == again.action_type == "create.recipe.success"
    assert first.payload == again.payload
    assert len(read(bus, READ_ALL, name=name)) == 1


def test_roll_call_is_answered_with_the_summary(bus, recorder):
    announcements = recorder(ANNOUNCE)
    bus.publish(ROLL_CALL, {})
    summary = announcements.wait_for(lambda e: e["payload"].get("name") == "recipe")["payload"]
    fields = {f["name"]: f for f in summary["fields"]}
    assert fields["name"] == {"name": "name", "type": "String", "required": True, "description": "Name."}
    assert fields["id"] == {"name": "id", "type": "ID", "required": True, "description": "The primary key."}
    assert fields["created_at"] == {"name": "created_at", "type": "DateTime", "required": True,
                                    "description": "Created at."}
    assert [m["name"] for m in summary["mutations"]] == ["createRecipe", "updateRecipe", "deleteRecipe"]
    assert summary["mutations"][0]["event"] == "create.recipe.pending"
    create_inputs = {i["name"]: i["required"] for i in summary["mutations"][0]["inputs"]}
    assert create_inputs == {"name": True, "description": False, "servings": False, "minutes": False,
                             "vegetarian": False, "owner": False, "private": False}  # the gateway hides owner
    assert summary["read_rules"] is True
    assert summary["version"]


def test_ask_nobody_answers_times_out(bus, broker_url):
    # issue 12: no queue bound to the type fails at once, a bound queue nobody consumes times out
    with pytest.raises(NoHandler, match=r"no service handles create.nobody.pending"):
        bus.ask("create.nobody.pending", {}, timeout=0.5)
    exchange = actions_exchange("nautilus.actions")
    queue = Queue("nautilus.test-nobody", exchange=exchange, bindings=[binding(exchange, "create.nobody.pending")])
    with broker_connection(broker_url) as conn:
        bound = queue(conn.channel())
        bound.declare()
        try:
            with pytest.raises(AskTimeout, match=r"No reply to create.nobody.pending within 0.5s"):
                bus.ask("create.nobody.pending", {}, timeout=0.5)
        finally:
            bound.delete()
