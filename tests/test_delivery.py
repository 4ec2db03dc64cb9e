"""Delivery guarantees with real workers on RabbitMQ and PostgreSQL: retries, dead letters, the outbox.

- A poison action is retried ``MAX_RETRIES`` times, on the failing service's queue only,
  then dead-lettered with its reason; an asker gets one ``.error`` reply.
- ``manage.py dead list|replay|purge`` shows, sends again and empties the dead-letter queue.
- A worker that dies between its commit and its publishes (a test hook makes it exit
  there) still gets its reply, its outcome and its emitted events out once restarted.
"""
import time
import uuid

import psycopg
import pytest

from nautilus_core.service import TEST_HOOK_EXIT_AFTER_COMMIT
from nautilus_core.testing import ServiceProcess, dead_letters, manage

FAULTY = "tests.faulty.settings"
CONNECTION = "examples.recipe_book.ingredients_connection.settings"

pytestmark = pytest.mark.brokers("rabbitmq", "redis")


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    """The flag file of the exit-after-commit test hook: the worker exits after a commit when it exists."""
    return tmp_path_factory.mktemp("hook") / "exit-after-commit"


@pytest.fixture(scope="module")
def faulty(cloud, hook):
    env = {**cloud.env(FAULTY), TEST_HOOK_EXIT_AFTER_COMMIT: str(hook)}
    process = cloud.start(FAULTY, env=env)
    return type("Faulty", (), {"env": env, "process": process})


def count_rows(database_url, table, name):
    with psycopg.connect(database_url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE name = %s", [name]).fetchone()[0]


def restart(cloud, service):
    """Start a new worker on the service's database (the old one is dead)."""
    service.process = ServiceProcess(service.process.settings, service.env, log_dir=cloud.log_dir).start()
    cloud.processes.append(service.process)
    return service.process.wait_ready()


def wait_until_dead(process, timeout=20):
    deadline = time.monotonic() + timeout
    while process.process.poll() is None:
        assert time.monotonic() < deadline, "the worker did not exit at the test hook"
        time.sleep(0.05)


# -- retries and dead letters ---------------------------------------------------------------


def test_a_poison_action_is_retried_then_dead_lettered_with_one_error_reply(bus, broker_url, faulty, recorder):
    dead_letters(broker_url)
    errors = recorder("explode.faulty.error")
    started = time.monotonic()
    reply = bus.ask("explode.faulty.pending", {"n": 1}, timeout=20)
    assert reply.action_type == "explode.faulty.error"
    assert reply.payload["code"] == "internal_error"
    assert time.monotonic() - started > 0.1 + 0.2 + 0.4  # the backoff of RETRY_BACKOFF 0.1: 0.1, 0.2, 0.4 s

    letters = dead_letters(broker_url)
    assert len(letters) == 1, letters
    letter = letters[0]
    assert letter["reason"] == "RuntimeError: boom"
    assert letter["attempts"] == 4  # the first try and MAX_RETRIES (3) retries
    assert letter["service"] == "faulty" and letter["queue"] == "nautilus.faulty"
    assert letter["routing_key"] == "explode.faulty.pending"  # the action's key, not the retry's queue name
    assert letter["body"]["payload"] == {"n": 1} and letter["kind"] == "action"
    assert bus._replies.unexpected == 0  # one reply, not one per attempt
    assert len(errors.drain(0.3)) == 1
    assert faulty.process.log().count("Retry in") == 3


def test_retries_go_to_the_failing_service_only_and_an_action_that_recovers_is_applied_once(bus, faulty, recorder):
    # a second queue bound to the same type: a retry sent to the exchange would reach it again
    others = recorder("flaky.faulty.pending")
    name = f"flaky-{uuid.uuid4().hex[:6]}"
    reply = bus.ask("flaky.faulty.pending", {"name": name}, timeout=20)
    assert reply.action_type == "flaky.faulty.success"
    assert count_rows(faulty.env["DATABASE_URL"], "recipes_recipe", name) == 1
    assert len(others.drain(0.5)) == 1  # the original publish only


def test_dead_command_lists_replays_and_purges(bus, broker_url, faulty, cloud):
    dead_letters(broker_url)
    env = faulty.env
    for n in range(3):
        bus.ask("explode.faulty.pending", {"n": n}, timeout=20)
    listing = manage(FAULTY, "dead", "list", env=env).stdout
    assert listing.count("RuntimeError: boom") == 3 and "3 of 3 dead letter(s)" in listing
    assert "#2 " in listing and "explode.faulty.pending" in listing and "(attempts 4)" in listing
    assert '"n": 1' in listing  # the body excerpt
    assert manage(FAULTY, "dead", "list", "--service", "nobody", env=env).stdout.strip() == "0 of 3 dead letter(s)"

    # replay one letter: it goes through its retries again, and back to the dead-letter queue
    replayed = manage(FAULTY, "dead", "replay", "2", env=env).stdout
    assert "replayed 1 of 3" in replayed
    deadline = time.monotonic() + 15
    while "3 of 3" not in (listing := manage(FAULTY, "dead", "list", env=env).stdout):
        assert time.monotonic() < deadline, "the replayed letter did not come back"
        time.sleep(0.5)
    assert '"n": 1' in listing.split("#3 ")[1]  # last now: it was sent again, and failed again

    assert "purged 3" in manage(FAULTY, "dead", "purge", env=env).stdout
    assert "0 of 0" in manage(FAULTY, "dead", "list", env=env).stdout


def test_a_raw_dead_letter_is_replayed_with_its_headers(bus, broker_url, faulty):
    """A raw message dead-lettered by the consumer, replayed as it was: headers and body kept."""
    dead_letters(broker_url)
    name = f"replayed-{uuid.uuid4().hex[:6]}"
    envelope = {"action_type": "create.faulty.pending", "payload": {"name": name}, "action_id": str(uuid.uuid4())}
    # an unknown task name: the consumer cannot run it, and keeps it
    bus.app.send_task("nautilus.other", args=[envelope], exchange=bus.exchange, routing_key="create.faulty.pending",
                      declare=[bus.exchange])
    assert bus.ask("read.faulty.pending", {"query": "{ all_models(first: 1) { pk } }"}, timeout=10)
    listing = manage(FAULTY, "dead", "list", "--json", env=faulty.env).stdout
    assert "unknown task 'nautilus.other'" in listing and '"kind": "message"' in listing
    # the operator fixes the task name... here the record is replayed as is and fails again the same way
    assert "replayed 1 of 1" in manage(FAULTY, "dead", "replay", env=faulty.env).stdout
    bus.ask("read.faulty.pending", {"query": "{ all_models(first: 1) { pk } }"}, timeout=10)
    again = dead_letters(broker_url)
    assert [letter["reason"] for letter in again] == ["unknown task 'nautilus.other'"]
    assert again[0]["headers"]["task"] == "nautilus.other" and again[0]["headers"]["id"]
    assert count_rows(faulty.env["DATABASE_URL"], "recipes_recipe", name) == 0


# -- the outbox ------------------------------------------------------------------------------


def test_a_worker_killed_between_commit_and_publish_still_answers_and_publishes(bus, cloud, faulty, hook, recorder):
    outcomes = recorder("create.faulty.success", "noted.faulty.success")
    name = f"outbox-{uuid.uuid4().hex[:6]}"
    hook.touch()
    future, action = bus._send_ask("create.faulty.pending", {"name": name})
    wait_until_dead(faulty.process)  # committed, then exited before replying or publishing
    assert not hook.exists()
    assert count_rows(faulty.env["DATABASE_URL"], "recipes_recipe", name) == 1
    assert outcomes.drain(0.3) == []

    restart(cloud, faulty)  # the unacknowledged action is redelivered: answered from the record
    reply = future.result(30)
    assert reply.action_type == "create.faulty.success" and reply.payload["name"] == name
    outcomes.wait_for(lambda e: e["payload"].get("name") == name)
    assert len(outcomes.drain(0.3)) == 1  # published once: the first worker died before publishing
    assert count_rows(faulty.env["DATABASE_URL"], "recipes_recipe", name) == 1
    assert "already handled create.faulty.pending" in faulty.process.log()

    # emitted events too, with the ids they were committed with
    name = f"noted-{uuid.uuid4().hex[:6]}"
    hook.touch()
    future, _ = bus._send_ask("note.faulty.pending", {"name": name, "count": 3})
    wait_until_dead(faulty.process)
    restart(cloud, faulty)
    recipe = future.result(30).payload["id"]
    outcomes.wait_for(lambda e: len([x for x in outcomes.of_type("noted.faulty.success")
                                     if x["payload"]["recipe"] == recipe]) >= 3)
    noted = [e for e in outcomes.of_type("noted.faulty.success") if e["payload"]["recipe"] == recipe]
    assert sorted(e["payload"]["n"] for e in noted) == [0, 1, 2]
    assert all(e["sender"] == "faulty" for e in noted)


def test_cascade_events_survive_a_crash_between_commit_and_publish(bus, cloud, hook, recorder):
    """The connection service's ``delete.ingredients.success`` per removed row goes through the outbox."""
    env = {**cloud.env(CONNECTION), TEST_HOOK_EXIT_AFTER_COMMIT: str(hook)}
    connection = type("Connection", (), {"env": env, "process": cloud.start(CONNECTION, env=env)})
    events = recorder("delete.ingredients.success")
    recipe = f"r-{uuid.uuid4().hex[:6]}"
    links = sorted(bus.ask("create.ingredients.pending", {"recipe": recipe, "ingredient": f"i{n}"},
                           timeout=10).payload["id"] for n in range(3))

    hook.touch()
    cascade = bus.publish("delete.recipe.success", {"id": recipe})
    wait_until_dead(connection.process)
    assert events.drain(0.3) == []  # the rows are gone, the events not out yet
    restart(cloud, connection)
    events.wait_for(lambda e: len(events.envelopes) >= 3, 30)
    assert sorted(e["payload"]["id"] for e in events.drain(0.3)) == links
    first_ids = {e["action_id"] for e in events.envelopes}
    # the same cascade again changes nothing; its outbox may go out again, as the same envelopes
    bus.publish(cascade)
    bus.ask("read.ingredients.pending", {"query": "{ all_models { pk } }"}, timeout=10)
    assert {e["action_id"] for e in events.drain(0.3)} == first_ids
