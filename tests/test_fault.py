"""Fault injection with real workers on RabbitMQ (and Redis) and PostgreSQL: nothing lost, nothing applied twice.

Each test is bounded in time and prints its figures (``-s`` shows them; they are also in the
report of a failure). Workers are stopped by their PID.
"""
import json
import os
import random
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import wait

import psycopg
import pytest
from kombu import Producer

from nautilus_core.actions import Action
from nautilus_core.brokers import connection as broker_connection
from nautilus_core.bus import actions_exchange, connect
from nautilus_core.testing import BrokerProxy, ServiceProcess, dead_letters, free_port

from .conftest import INGREDIENTS, RECIPES

CONNECTION = "examples.recipe_book.ingredients_connection.settings"


def recipe_rows(database_url, prefix):
    """(rows, distinct names) of the recipes whose name starts with ``prefix``."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT name) FROM recipes_recipe WHERE name LIKE %s",
                            [prefix + "%"]).fetchone()


def stream_length(broker_url, on_rabbitmq):
    """Actions per stream: fewer on Redis, where kombu spends several round trips per message (a
    look-up of the bindings per publish, the unacknowledged record per delivery), to keep within
    CI's time; ``NAUTILUS_FAULT_STREAM`` sets a longer (or shorter) one on either broker."""
    return int(os.environ.get("NAUTILUS_FAULT_STREAM") or (on_rabbitmq if broker_url.startswith("amqp") else
                                                            on_rabbitmq // 4))


def logged(processes, pattern):
    return sum(len(re.findall(pattern, p.log())) for p in processes)


def stream_asks(bus, payloads, *, window=500):
    """Ask ``create.recipe.pending`` once per payload from a thread, at most ``window`` unanswered at a time
    (a stream, not one burst); return the futures of the replies, in order."""
    replies = bus._reply_listener()
    room = threading.BoundedSemaphore(window)
    futures = []

    def send():
        for payload in payloads:
            room.acquire()
            action = Action("create.recipe.pending", payload, correlation_id=str(uuid.uuid4()), sender=bus.sender)
            future = replies.expect(action.correlation_id)
            future.add_done_callback(lambda _: room.release())
            futures.append(future)
            bus.publish(action, reply_to=replies.queue.name)

    sender = threading.Thread(target=send)
    sender.start()
    return sender, futures


# -- kill -9 during a stream -----------------------------------------------------------------


@pytest.mark.slow
# On Redis this found kombu's window between BRPOP and the unacknowledged record: a kill there lost the
# action (nautilus_core/redis_transport.py takes with BLMOVE instead)
@pytest.mark.brokers("rabbitmq", "redis")
def test_kill_9_during_a_stream_of_10000_asks(cloud, broker_url):
    """A worker is killed with SIGKILL again and again while 10,000 creates (2,500 on Redis) stream in,
    and restarted.

    Unacknowledged actions are redelivered to the next worker (on Redis once the visibility
    timeout, 8 s here, has passed); those already committed are answered from their record.
    Afterwards: exactly one row and one answer per ask.
    """
    sent, kills = stream_length(broker_url, 10_000), 0
    env = cloud.env(RECIPES)
    workers = [cloud.start(RECIPES, env=env)]
    bus = connect(broker_url, sender="fault")
    done = threading.Event()

    def killer():
        nonlocal kills
        while not done.wait(random.uniform(2.0, 3.0)) and kills < 5:
            workers[-1].kill()
            kills += 1
            workers.append(ServiceProcess(RECIPES, env, log_dir=cloud.log_dir).start())
            cloud.processes.append(workers[-1])
            workers[-1].wait_ready()

    started = time.monotonic()
    thread = threading.Thread(target=killer)
    thread.start()
    try:
        sender, futures = stream_asks(bus, [{"name": f"k-{n}"} for n in range(sent)])
        sender.join(240)
        answered, unanswered = wait(futures, timeout=max(1, 240 - (time.monotonic() - started)))
    finally:
        done.set()
        thread.join(60)
    elapsed = time.monotonic() - started
    workers[-1].stop()  # the queue is shared by the module's tests
    rows, distinct = recipe_rows(env["DATABASE_URL"], "k-")
    figures = {
        "actions sent": sent, "replies": len(answered), "rows": rows, "duplicate rows": rows - distinct,
        "kills (kill -9)": kills, "redeliveries": logged(workers, r"redelivered action"),
        "answered again from the record": logged(workers, r"already handled"),
        "duplicate replies dropped by the asker": bus._replies.unexpected, "seconds": round(elapsed, 1),
    }
    bus.close()
    print("\nkill -9 during a stream:", json.dumps(figures))
    assert not unanswered, {**figures, "unanswered": len(unanswered)}
    replies = [future.result() for future in futures]
    assert kills >= 3, figures
    assert all(r.action_type == "create.recipe.success" for r in replies), figures
    assert sorted(r.payload["name"] for r in replies) == sorted(f"k-{n}" for n in range(sent))
    assert len({r.payload["id"] for r in replies}) == sent  # each ask answered by its own row
    assert (rows, distinct) == (sent, sent), figures


# -- two workers, the same actions twice -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.brokers("rabbitmq", "redis")
def test_two_workers_and_every_action_delivered_twice(cloud, broker_url):
    """Two workers compete on one queue, and every action is published twice (as a redelivery would):
    both copies race on the two workers, and still each action makes one row and one answer."""
    sent = stream_length(broker_url, 2_000)
    env = cloud.env(RECIPES)
    workers = cloud.start(RECIPES, workers=2, env=env)
    bus = connect(broker_url, sender="fault")
    replies = bus._reply_listener()
    futures = []
    started = time.monotonic()
    for n in range(sent):
        action = Action("create.recipe.pending", {"name": f"twice-{n}"}, correlation_id=str(uuid.uuid4()),
                        sender="fault")
        futures.append(replies.expect(action.correlation_id))
        bus.publish(action, reply_to=replies.queue.name)
        bus.publish(action, reply_to=replies.queue.name)
    answers = [f.result(120) for f in futures]
    deadline = time.monotonic() + 30
    while replies.unexpected < sent and time.monotonic() < deadline:  # the second answers
        time.sleep(0.1)
    for worker in workers:
        worker.stop()
    rows, distinct = recipe_rows(env["DATABASE_URL"], "twice-")
    handled = [len(re.findall(r"action recipe create\.recipe\.pending success", w.log())) for w in workers]
    figures = {"actions": sent, "messages": 2 * sent, "rows": rows, "duplicate rows": rows - distinct,
               "handled per worker": handled, "answered again from the record": logged(workers, "already handled"),
               "second replies": replies.unexpected, "seconds": round(time.monotonic() - started, 1)}
    bus.close()
    print("\ntwo workers, every action twice:", json.dumps(figures))
    assert all(a.action_type == "create.recipe.success" for a in answers)
    assert (rows, distinct) == (sent, sent), figures
    assert all(count > sent // 10 for count in handled), figures  # both really competed
    assert replies.unexpected == sent, figures  # the copy was answered too, with the recorded answer


# -- fuzz ------------------------------------------------------------------------------------


def fuzz_messages(rng, service, count):
    """``count`` (routing key, body, publish options) that are not valid actions of ``service``, or odd ones."""
    types = [f"{m}.{service}.pending" for m in ("create", "read", "update", "delete")]
    if service == "ingredients":
        types += ["delete.recipe.success", "delete.ingredient.success"]

    def junk(depth=0):
        kind = rng.randrange(9 if depth < 3 else 6)
        return [lambda: rng.randrange(-2**70, 2**70), lambda: rng.random() * 1e308, lambda: None,
                lambda: rng.choice([True, False]), lambda: "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(20)),
                lambda: "x" * rng.choice([0, 201, 70_000]),
                lambda: [junk(depth + 1) for _ in range(3)],
                lambda: {rng.choice(["name", "id", "servings", "recipe", "ingredient", "query", "pk", "n"]):
                         junk(depth + 1) for _ in range(3)},
                lambda: {"query": rng.choice(["{", "{ all_models { pk } }", "query { " * 300, "x" * 10_000])},
                ][kind]()

    def deep(n):
        """JSON text nested ``n`` deep (too deep for ``json.dumps`` to write)."""
        opening = "".join(rng.choice(['{"nested": ', "["]) for _ in range(n))
        return opening + '"bottom"' + "".join("}" if c == "{" else "]" for c in reversed(opening) if c in "{[")

    task = {"headers": {"task": "nautilus.action", "id": str(uuid.uuid4())}}
    for _ in range(count):
        key = rng.choice(types)
        envelope = {"action_type": key, "payload": junk(), "action_id": str(uuid.uuid4())}
        choice = rng.randrange(12)
        if choice == 0:  # random bytes claiming to be JSON
            yield key, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), {
                "content_type": "application/json", "content_encoding": "utf-8", **task}
        elif choice == 1:  # another serializer, or none
            yield key, b"\x80\x04K\x01.", {"content_type": rng.choice(["application/x-python-serialize",
                                                                       "text/plain", "application/x-yaml"]),
                                           "content_encoding": "binary", **task}
        elif choice == 2:  # JSON, not a task message
            yield key, json.dumps(junk()), {"content_type": "application/json", "content_encoding": "utf-8"}
        elif choice == 3:  # a task message with wrong arguments
            body = [rng.choice([[], [envelope, envelope], [1]]), rng.choice([{}, {"x": 1}]), {}]
            yield key, json.dumps(body), {"content_type": "application/json", "content_encoding": "utf-8", **task}
        elif choice == 4:  # the envelope is not an object
            yield key, [[junk()], {}, {}], task
        elif choice == 5:  # envelope fields of the wrong types
            field = rng.choice(["action_type", "action_id", "correlation_id", "sender", "sent_at", "payload"])
            yield key, [[{**envelope, field: rng.choice([1, [], {"a": 1}, 2.5, True])}], {}, {}], task
        elif choice == 6:  # an action type nobody handles, on a key the service is bound to
            yield key, [[{**envelope, "action_type": rng.choice(["explode.x.pending", "", "a" * 5000, "x.y"])}],
                        {}, {}], task
        elif choice == 7:  # deep nesting: deeper than JSON parsers recurse, or just deep
            head = json.dumps([[{**envelope, "payload": {"name": "@"}}], {}, {}])
            yield key, head.replace('"@"', deep(rng.choice([200, 5000]))), {
                "content_type": "application/json", "content_encoding": "utf-8", **task}
        elif choice == 8:  # huge strings
            yield key, [[{**envelope, "payload": {"name": "é" * 400_000, "recipe": "r" * 300_000}}], {}, {}], task
        else:  # a well-formed envelope with a junk payload
            yield key, [[envelope], {}, {}], task


@pytest.mark.slow
def test_fuzz_every_service_keeps_answering(cloud, bus, broker_url):
    """Thousands of malformed messages at the recipe, ingredient and connection services, with valid
    asks in between that must all be answered; afterwards every worker is the one that started."""
    services = {"recipe": cloud.start(RECIPES), "ingredient": cloud.start(INGREDIENTS),
                "ingredients": cloud.start(CONNECTION)}
    rng = random.Random(8)
    per_service, sent, asked = 1_000, 0, 0
    exchange = actions_exchange("nautilus.actions")
    dead_letters(broker_url)
    started = time.monotonic()
    with broker_connection(broker_url) as conn:
        producer = Producer(conn.channel(), exchange=exchange, serializer="json")
        streams = {name: list(fuzz_messages(rng, name, per_service)) for name in services}
        for batch in range(0, per_service, 100):
            for name, stream in streams.items():
                for key, body, options in stream[batch:batch + 100]:
                    options = {**options, "headers": {**options.get("headers", {}), "id": str(uuid.uuid4())}}
                    producer.publish(body, routing_key=key, declare=[exchange], **options)
                    sent += 1
            for name in services:  # valid actions keep being answered
                payload = ({"recipe": f"r{batch}", "ingredient": f"i{batch}"} if name == "ingredients"
                           else {"name": f"valid-{batch}"})
                reply = bus.ask(f"create.{name}.pending", payload, timeout=30)
                assert reply.action_type == f"create.{name}.success", reply.payload
                asked += 1
    letters = dead_letters(broker_url)
    reasons = {}
    for letter in letters:
        reason = re.sub(r"of \S+ must|\(attempt.*|: .*codec.*", "…", letter["reason"])[:45]
        reasons[reason] = reasons.get(reason, 0) + 1
    figures = {"malformed sent": sent, "valid asks answered": asked, "dead letters": len(letters),
               "seconds": round(time.monotonic() - started, 1)}
    print("\nfuzz:", json.dumps(figures), "\nreasons:", json.dumps(reasons, indent=1, ensure_ascii=False))
    alive = all(p.process.poll() is None for p in services.values())
    for process in services.values():
        process.stop()
    assert alive, "a worker died"
    assert len(letters) > sent // 2, figures
    assert all(letter.get("service") in services for letter in letters)


# -- broker outage ---------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_and_asker_survive_a_broker_outage(cloud, broker_url):
    """The broker goes away (through the proxy) while asks are in flight, and comes back.

    Every ask published (and confirmed) before the outage is answered after it; the worker and
    the asker's reply listener reconnect by themselves; an ask during the outage fails fast
    with an error instead of hanging; nothing is applied twice.
    """
    proxy = BrokerProxy()
    try:
        url = proxy.url(broker_url)
        env = {**cloud.env(RECIPES), "NAUTILUS_BROKER_URL": url}
        worker = cloud.start(RECIPES, env=env)
        bus = connect(url, sender="outage", transport_options={"confirm_publish": True})
        before = [bus._send_ask("create.recipe.pending", {"name": f"before-{n}"}) for n in range(600)]
        time.sleep(0.2)  # some answered, most still queued or in the worker's hands
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(Exception):
            bus.ask("create.recipe.pending", {"name": "during"}, timeout=3)
        failed_fast = time.monotonic() - started
        time.sleep(3)
        proxy.restore()
        answers = [future.result(90) for future, _ in before]
        after = bus.ask("create.recipe.pending", {"name": "after"}, timeout=30)
        worker_survived = worker.process.poll() is None
        worker.stop()
        rows, distinct = recipe_rows(env["DATABASE_URL"], "")
        figures = {"asked before the outage": len(before), "answered": len(answers), "rows": rows,
                   "duplicate rows": rows - distinct, "redeliveries": logged([worker], "redelivered action"),
                   "ask during the outage failed after s": round(failed_fast, 2),
                   "duplicate replies dropped": bus._replies.unexpected}
        print("\nbroker outage:", json.dumps(figures))
        assert worker_survived, "the worker did not survive"
        assert all(a.action_type == "create.recipe.success" for a in answers)
        assert after.action_type == "create.recipe.success"
        assert failed_fast < 10
        assert rows == distinct, figures
        assert rows - len(before) - 1 in (0, 1), figures  # plus "during", had its publish got through
        names = {a.payload["name"] for a in answers} | {"after"}
        assert len(names) == len(before) + 1
        bus.close()
    finally:
        proxy.close()


@pytest.mark.slow
@pytest.mark.brokers("redis")
def test_worker_and_asker_survive_a_redis_restart_without_persistence(cloud, tmp_path):
    """A Redis of the test's own (``--save "" --appendonly no``, as this machine's) is killed and
    started again, empty, while a worker and an asker use it.

    They reconnect by themselves and the worker declares its queue and bindings again; an ask
    during the outage fails fast; the action a worker held across the restart is applied once.
    What was only in Redis (queued actions, replies not yet read, dead letters) is gone: the
    README's delivery section says so, and the data is not checked here.
    """
    port = free_port()

    def start_redis():
        return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)

    server = start_redis()
    try:
        url = f"redis://127.0.0.1:{port}/0"
        env = {**cloud.env(RECIPES), "NAUTILUS_BROKER_URL": url}
        worker = cloud.start(RECIPES, env=env)
        bus = connect(url, sender="restart")
        assert bus.ask("create.recipe.pending", {"name": "before"}, timeout=10).action_type == "create.recipe.success"
        in_flight = [bus._send_ask("create.recipe.pending", {"name": f"in-flight-{n}"}) for n in range(50)]
        server.kill()
        server.wait()
        started = time.monotonic()
        with pytest.raises(Exception):
            bus.ask("create.recipe.pending", {"name": "during"}, timeout=3)
        failed_fast = time.monotonic() - started
        server = start_redis()
        deadline, after = time.monotonic() + 60, None
        while after is None:  # the worker and the reply listener reconnect, the worker binds again
            try:
                after = bus.ask("create.recipe.pending", {"name": "after"}, timeout=2)
            except Exception:
                assert time.monotonic() < deadline, worker.log()[-3000:]
        answered = sum(future.done() for future, _ in in_flight)
        worker_survived = worker.process.poll() is None
        worker.stop()
        rows, distinct = recipe_rows(env["DATABASE_URL"], "")
        figures = {"in flight at the restart": len(in_flight), "answered of those": answered, "rows": rows,
                   "ask during the outage failed after s": round(failed_fast, 2)}
        print("\nredis restart:", json.dumps(figures))
        bus.close()
        assert worker_survived and after.action_type == "create.recipe.success", figures
        assert failed_fast < 10, figures
        assert rows == distinct, figures  # nothing applied twice
    finally:
        server.kill()
        server.wait()
