"""Deadlines: an ask that timed out is never applied later, so its asker may retry it (RabbitMQ + PostgreSQL).

- A worker paused (SIGSTOP) past an ask's deadline refuses the action when it resumes, and
  records the refusal: a redelivery of the same message is refused too, even with a new deadline.
- The same through the gateway, and across a broker outage (everything reaches RabbitMQ through a
  proxy the test cuts): no mutation answered ``service_unavailable`` is ever applied.
- The broker's per-message TTL drops an ask that nobody consumed in time.
"""
import json
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from concurrent.futures import TimeoutError as FutureTimeout
from types import SimpleNamespace

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu import Connection, Queue, binding

from nautilus_core.actions import ANNOUNCE, Action, MalformedAction, deadline_in
from nautilus_core.bus import actions_exchange, connect
from nautilus_core.testing import BrokerProxy, virtual_host

from .conftest import BROKER_URL, GATEWAY, INGREDIENTS, RUN_ID, Cloud, graphql

CREATE = 'mutation($n: String!) { createIngredient(name: $n) { ingredient { id name } } }'


def ingredient_rows(database_url, prefix):
    """``{name: count}`` of the ingredients whose name starts with ``prefix``."""
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT name, count(*) FROM ingredients_ingredient WHERE name LIKE %s GROUP BY name",
                                 [prefix + "%"]).fetchall())


def handled(database_url, action_id):
    """The recorded answer's payload of ``action_id`` (None while it is not recorded)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT outcome_payload FROM nautilus_core_handledaction WHERE action_id = %s",
                           [action_id]).fetchone()
    return row[0] if row else None


def refusals(database_url):
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM nautilus_core_handledaction "
                            "WHERE outcome_payload->>'code' = 'deadline_exceeded'").fetchone()[0]


def eventually(condition, timeout=20, every=0.1):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(every)
    return result


def test_a_paused_worker_refuses_an_ask_past_its_deadline_and_records_it(cloud, bus):
    env = cloud.env(INGREDIENTS)
    worker = cloud.start(INGREDIENTS, env=env)
    name = f"late-{uuid.uuid4().hex[:6]}"
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        future, action = bus._send_ask("create.ingredient.pending", {"name": name}, timeout=1)
        assert action.deadline is not None
        with pytest.raises(FutureTimeout):
            future.result(1 + bus.grace)  # what Bus.ask waits: the asker gives up
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    refusal = eventually(lambda: handled(env["DATABASE_URL"], action.action_id))
    assert refusal["code"] == "deadline_exceeded" and refusal["details"] == {"deadline": action.deadline}
    assert ingredient_rows(env["DATABASE_URL"], name) == {}
    assert "past its deadline" in worker.log()

    # the same message again (a redelivery; here even with a new deadline): the record answers, nothing applied
    replies = bus._reply_listener()
    copy = Action(**{**action.__dict__, "correlation_id": str(uuid.uuid4()), "deadline": deadline_in(30)})
    answer = replies.expect(copy.correlation_id)
    bus.publish(copy, reply_to=replies.queue.name)
    reply = answer.result(20)
    assert reply.action_type == "create.ingredient.error" and reply.payload["code"] == "deadline_exceeded"
    assert ingredient_rows(env["DATABASE_URL"], name) == {}

    # so the asker can retry: a new ask is applied, once
    assert bus.ask("create.ingredient.pending", {"name": name}, timeout=20).action_type == "create.ingredient.success"
    assert ingredient_rows(env["DATABASE_URL"], name) == {name: 1}
    worker.stop()  # the queue is shared by the module's tests


def test_an_action_applied_before_its_deadline_keeps_its_answer_when_redelivered_late(cloud, bus):
    env = cloud.env(INGREDIENTS)
    worker = cloud.start(INGREDIENTS, env=env)
    name = f"early-{uuid.uuid4().hex[:6]}"
    future, action = bus._send_ask("create.ingredient.pending", {"name": name}, timeout=2)
    assert future.result(10).action_type == "create.ingredient.success"
    time.sleep(2.1)  # past the deadline: a redelivery now must not turn the success into a refusal
    replies = bus._reply_listener()
    copy = Action(**{**action.__dict__, "correlation_id": str(uuid.uuid4())})
    answer = replies.expect(copy.correlation_id)
    bus.publish(copy, reply_to=replies.queue.name)
    assert answer.result(20).action_type == "create.ingredient.success"
    assert ingredient_rows(env["DATABASE_URL"], name) == {name: 1}
    worker.stop()


def test_an_ask_nobody_consumed_expires_on_the_broker(broker_url, bus):
    """The deadline is also the message's TTL: RabbitMQ drops it unread (the worker's check stays the rule)."""
    exchange = actions_exchange("nautilus.actions")
    key = f"create.ttl{uuid.uuid4().hex[:6]}.pending"
    queue = Queue(f"nautilus.test-ttl-{uuid.uuid4().hex[:6]}", exchange=exchange,
                  bindings=[binding(exchange, routing_key=key)], durable=False, auto_delete=False)
    with Connection(broker_url) as conn:
        channel = conn.channel()
        queue(channel).declare()
        try:
            future, action = bus._send_ask(key, {}, timeout=1.5)
            bus._replies.forget(action.correlation_id)
            eventually(lambda: channel.queue_declare(queue.name, passive=True).message_count == 1, timeout=1)
            eventually(lambda: channel.queue_declare(queue.name, passive=True).message_count == 0, timeout=10)
            bus.publish(key, {})  # a publish has no deadline, so no TTL
            time.sleep(1)
            assert channel.queue_declare(queue.name, passive=True).message_count == 1
        finally:
            queue(channel).delete()


# -- through the gateway, and across a broker outage ---------------------------------------------


@pytest.fixture(scope="module")
def small_cloud(databases, tmp_path_factory):
    """An ingredient worker and a gateway (asks time out after 2 s) in a virtual host of their own,
    each reaching RabbitMQ through a proxy of its own that a test can cut."""
    proxies = SimpleNamespace(worker=BrokerProxy(), gateway=BrokerProxy())
    with virtual_host(BROKER_URL, f"nautilus-test-{RUN_ID}-deadlines") as url:
        services = Cloud(url, databases, tmp_path_factory.mktemp("logs"))
        try:
            ingredient = services.start(INGREDIENTS, env={**services.env(INGREDIENTS),
                                                          "NAUTILUS_BROKER_URL": proxies.worker.url(url)})
            gateway = services.start(GATEWAY, http=True, env={**services.env(GATEWAY), "NAUTILUS_ASK_TIMEOUT": "2",
                                                              "NAUTILUS_BROKER_URL": proxies.gateway.url(url)})
            eventually(lambda: "ingredient" in (graphql(gateway.url, "{ _services }")[1].get("data") or {}).get(
                "_services", []), timeout=30, every=0.3)
            bus = connect(url, sender="test")  # straight to RabbitMQ, not through a proxy
            yield SimpleNamespace(url=gateway.url, ingredient=ingredient, proxies=proxies, bus=bus,
                                  database=ingredient.env["DATABASE_URL"])
            bus.close()
        finally:
            services.stop_all()
            proxies.worker.close()
            proxies.gateway.close()


def mutate(url, name):
    """``"ok"`` or the error code of a createIngredient mutation."""
    status, body = graphql(url, CREATE, {"n": name})
    assert status == 200, body
    if not body.get("errors"):
        return "ok"
    return body["errors"][0].get("extensions", {}).get("code") or body["errors"][0]["message"]


def test_a_mutation_that_timed_out_at_the_gateway_is_never_applied(small_cloud):
    name = f"paused-{uuid.uuid4().hex[:6]}"
    before = refusals(small_cloud.database)
    os.kill(small_cloud.ingredient.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert mutate(small_cloud.url, name) == "service_unavailable"
        assert time.monotonic() - started < 2 + 0.5 + 3  # the request's budget, the grace, a margin
    finally:
        os.kill(small_cloud.ingredient.pid, signal.SIGCONT)
    eventually(lambda: refusals(small_cloud.database) == before + 1)
    assert ingredient_rows(small_cloud.database, name) == {}
    assert mutate(small_cloud.url, name) == "ok"  # the client retries: created once
    assert ingredient_rows(small_cloud.database, name) == {name: 1}


def handled_at(database_url, names):
    """``{name: when its create was recorded}`` (the worker's clock) for the ingredients ``names``."""
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT outcome_payload->>'name', handled_at FROM nautilus_core_handledaction "
                                 "WHERE outcome_payload->>'name' = ANY(%s)", [list(names)]).fetchall())


@pytest.mark.parametrize("who", ["everyone", "the worker"])
def test_no_mutation_answered_service_unavailable_is_applied_after_a_broker_outage(small_cloud, who):
    """A client creates ingredients one after the other through the gateway while RabbitMQ goes away for
    6 s (for everyone, or for the worker only: then asks wait in its queue past their deadline, where the
    broker drops them or the worker refuses them) and comes
    back. Afterwards: every ``ok`` is one row; no ``service_unavailable`` was applied after it was answered
    (one committed before its deadline, whose answer the cut lost, is the window the README names);
    ``outcome_unknown`` (the gateway lost its own connection meanwhile) may be either, and is counted."""
    prefix = f"outage-{uuid.uuid4().hex[:4]}-"
    proxies = [small_cloud.proxies.worker] + ([small_cloud.proxies.gateway] if who == "everyone" else [])
    answers, sent_at, stop = [], {}, threading.Event()

    def client():
        n = 0
        while not stop.is_set():
            sent_at[f"{prefix}{n}"] = datetime.now(timezone.utc)
            answers.append((f"{prefix}{n}", mutate(small_cloud.url, f"{prefix}{n}"), time.monotonic()))
            n += 1
            time.sleep(0.02)

    before = refusals(small_cloud.database)
    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(1.5)
        for proxy in proxies:
            proxy.cut()
        cut = time.monotonic()
        time.sleep(6)
        for proxy in proxies:
            proxy.restore()
        restored = time.monotonic()
        eventually(lambda: any(code == "ok" and at > restored for _, code, at in answers), timeout=90, every=0.2)
        time.sleep(1)
    finally:
        stop.set()
        thread.join(60)
    # the worker has been through its queue once it answers an ask sent after every mutation
    assert small_cloud.bus.ask("read.ingredient.pending", {"query": "{ all_models(first: 0) { pk } }"},
                               timeout=60).action_type == "read.ingredient.success"
    rows = ingredient_rows(small_cloud.database, prefix)
    codes = {}
    for _, code, _ in answers:
        codes[code] = codes.get(code, 0) + 1
    unavailable = {name for name, code, _ in answers if code == "service_unavailable"}
    applied_anyway = handled_at(small_cloud.database, unavailable & set(rows))
    figures = {"cut": who, "mutations": len(answers), "answers": codes, "rows": len(rows),
               "outcome_unknown applied": sum(name in rows for name, code, _ in answers if code == "outcome_unknown"),
               "refused past their deadline": refusals(small_cloud.database) - before,
               "service_unavailable applied before its deadline, answer lost": len(applied_anyway),
               "outage seconds": round(restored - cut, 1)}
    print("\nmutations across a broker outage:", json.dumps(figures))
    assert codes.get("service_unavailable", 0) >= 1, figures
    assert set(codes) <= {"ok", "service_unavailable", "outcome_unknown"}, figures
    assert all(count == 1 for count in rows.values()), figures  # nothing applied twice
    assert all(name in rows for name, code, _ in answers if code == "ok"), figures
    budget = timedelta(seconds=2)  # the gateway's: each mutation's deadline is its request's start + 2 s
    assert all(at < sent_at[name] + budget for name, at in applied_anyway.items()), (applied_anyway, figures)
    assert len(applied_anyway) <= 1, figures  # at most the one in the worker's hands at the cut


def test_a_service_nobody_runs_is_a_no_handler_error_at_once(small_cloud):
    """An announced service whose queue does not exist: the gateway's ask comes back from RabbitMQ unrouted."""
    summary = {"name": "ghost", "fields": [{"name": "id", "type": "ID"}, {"name": "name", "type": "String"}],
               "mutations": [], "version": "1"}
    small_cloud.bus.publish(ANNOUNCE, summary)
    eventually(lambda: "ghost" in (graphql(small_cloud.url, "{ _services }")[1].get("data") or {}).get(
        "_services", []), timeout=20, every=0.2)
    started = time.monotonic()
    status, body = graphql(small_cloud.url, "{ ghost { name } ingredient(first: 1) { name } }")
    elapsed = time.monotonic() - started
    assert status == 200 and body["data"]["ghost"] is None and body["data"]["ingredient"] is not None
    error = body["errors"][0]
    assert error["path"] == ["ghost"] and error["extensions"]["code"] == "no_handler", error
    assert "no service handles read.ghost.pending" in error["message"]
    assert elapsed < 1.5, elapsed  # no waiting for the 2 s budget


# -- the envelope's deadline, as received ----------------------------------------------------------


OFFSETS = [timezone.utc, timezone(timedelta(hours=-11)), timezone(timedelta(hours=5, minutes=30))]


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(OFFSETS)))
def test_a_deadline_is_read_in_any_offset(moment):
    action = Action.from_dict({"action_type": "create.recipe.pending", "deadline": moment.isoformat()})
    assert action.deadline == moment.isoformat()
    assert action.expired() == (moment < datetime.now(timezone.utc))
    assert action.to_dict()["deadline"] == moment.isoformat()


@given(st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.lists(st.integers()),
                 st.dictionaries(st.text(), st.text())))
def test_a_deadline_that_is_not_an_iso_time_is_refused(value):
    try:
        readable = isinstance(value, str) and datetime.fromisoformat(value) is not None
    except ValueError:
        readable = False
    if readable:
        return  # hypothesis found a real ISO time: read above
    with pytest.raises(MalformedAction, match="deadline"):
        Action.from_dict({"action_type": "create.recipe.pending", "deadline": value})


def test_an_envelope_without_a_deadline_is_never_late():
    action = Action.from_dict({"action_type": "create.recipe.pending", "payload": {}})
    assert action.deadline is None and not action.expired() and "deadline" not in action.to_dict()
    naive = Action.from_dict({"action_type": "create.recipe.pending", "deadline": "2000-01-01T00:00:00"})
    assert naive.expired()  # a time without offset is UTC
