"""Every layer of a bad message is refused the same way, with a real worker on RabbitMQ and PostgreSQL.

Each message below once stopped a worker for good, ran a Celery feature from the bus, or vanished
without a trace (issue 12). Now each is dead-lettered with its layer and reason, an asker with a
``reply_to`` gets exactly one ``.error`` (code ``malformed_action``), and the worker goes on.
Data the database refuses is an ``.error`` answer at once (``invalid_data``), never retried.
"""
import gzip
import json
import pickle
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from kombu import Connection, Consumer, Producer, Queue

from nautilus_core.bus import actions_exchange, connect
from nautilus_core.testing import dead_letters, drain_for

from .conftest import RECIPES

FAULTY = "tests.faulty.settings"
KEY = "create.recipe.pending"


class Asker:
    """Publishes raw messages with a ``reply_to`` of its own, and keeps every reply it gets."""

    def __init__(self, broker_url):
        self.connection = Connection(broker_url)
        self.channel = self.connection.channel()
        self.exchange = actions_exchange("nautilus.actions")
        self.producer = Producer(self.connection.channel(), exchange=self.exchange)
        self.queue = Queue(f"nautilus.test-asker.{uuid.uuid4().hex}", durable=False, auto_delete=True)
        self.replies = []
        self.consumer = Consumer(self.channel, queues=[self.queue], callbacks=[self._on_reply], no_ack=True,
                                 accept=["json"])
        self.consumer.consume()

    def _on_reply(self, body, message):
        self.replies.append(body)

    def publish(self, body, *, token, routing_key=KEY, headers=None, content_type="application/json",
                content_encoding="utf-8"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.producer.publish(body, routing_key=routing_key, headers=headers or {}, content_type=content_type,
                              content_encoding=content_encoding, reply_to=self.queue.name, correlation_id=token,
                              declare=[self.exchange])

    def drain(self, seconds):
        drain_for(self.connection, seconds)
        return self.replies

    def replies_to(self, token):
        return [r for r in self.replies if isinstance(r, dict) and r.get("correlation_id") == token]

    def close(self):
        self.consumer.cancel()
        self.connection.release()


@pytest.fixture(scope="module")
def recipe(cloud):
    return cloud.start(RECIPES)


@pytest.fixture(scope="module")
def asker(broker_url):
    asker = Asker(broker_url)
    yield asker
    asker.close()


@pytest.fixture(scope="module")
def module_bus(broker_url):
    bus = connect(broker_url, sender="poison")
    yield bus
    bus.close()


def envelope(token, **fields):
    return {"action_type": KEY, "payload": {"name": f"poison-{token[:8]}"}, "action_id": token,
            "correlation_id": token, "sender": "poison", **fields}


def task(**headers):
    return {"task": "nautilus.action", "id": str(uuid.uuid4()), **headers}


def signature(name, args=(), kwargs=None):
    """A Celery signature as it travels in JSON."""
    return {"task": name, "args": list(args), "kwargs": kwargs or {}, "options": {}, "subtask_type": None,
            "immutable": False}


def deep(n):
    value = "bottom"
    for _ in range(n):
        value = {"nested": value}
    return value


NOW = datetime.now(timezone.utc)

# (case, layer, reason fragment, publish) where publish(asker, token) sends one message
CASES = [
    # -- content type and encoding
    ("pickle", "content_type", "JSON only",
     lambda a, t: a.publish(pickle.dumps([[envelope(t)], {}, {}]), token=t, headers=task(),
                            content_type="application/x-python-serialize", content_encoding="binary")),
    ("text-plain", "content_type", "JSON only",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(), content_type="text/plain")),
    ("no-content-type", "content_type", "JSON only",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(), content_type=None,
                            content_encoding=None)),
    ("latin-1", "content_type", "UTF-8 only",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(), content_encoding="latin-1")),
    ("gzip", "content_type", "compressed",
     lambda a, t: a.publish(gzip.compress(json.dumps([[envelope(t)], {}, {}]).encode()), token=t,
                            headers=task(compression="application/x-gzip"))),
    # -- the Celery headers
    ("no-task-header", "headers", "no Celery task header",
     lambda a, t: a.publish(envelope(t), token=t)),
    ("no-id", "headers", "id header",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers={"task": "nautilus.action"})),
    ("task-list", "headers", "task header must be a string",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(task=["nautilus.action"]))),
    ("task-number", "headers", "task header must be a string",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(task=5))),
    ("celery.starmap", "headers", "unknown task 'celery.starmap'",
     lambda a, t: a.publish([[], {"task": signature("nautilus.action"),
                                  "it": [[envelope(f"{t}-{n}")] for n in range(3)]}, {}], token=t,
                            headers=task(task="celery.starmap"))),
    ("celery.accumulate", "headers", "unknown task 'celery.accumulate'",
     lambda a, t: a.publish([[1, 2], {}, {}], token=t, headers=task(task="celery.accumulate"))),
    ("celery.chord_unlock", "headers", "unknown task",
     lambda a, t: a.publish([[], {}, {}], token=t, headers=task(task="celery.chord_unlock"))),
    ("timelimit-x", "headers", "timelimit",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(timelimit="x"))),
    ("timelimit-1s", "headers", "timelimit",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(timelimit=[1, 1]))),
    ("expires-past", "headers", "expires",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(expires="2020-01-01T00:00:00+00:00"))),
    ("eta-a-year-ahead", "headers", "not signed",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t,
                            headers=task(eta=(NOW + timedelta(days=365)).isoformat()))),
    ("countdown", "headers", "countdown",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(countdown=60))),
    ("retries-abc", "headers", "retries must be a count",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(retries="abc"))),
    ("retries-unsigned", "headers", "not signed",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(retries=3))),
    ("retries-forged", "headers", "not signed",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(retries=1, nautilus_retry="x:1:forged"))),
    ("callbacks-header", "headers", "callbacks",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t,
                            headers=task(callbacks=[signature("celery.accumulate")]))),
    ("errbacks-header", "headers", "errbacks",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(errbacks=[signature("x")]))),
    ("chain-header", "headers", "chain",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(chain=[signature("x")]))),
    ("chord-header", "headers", "chord",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(chord=signature("x")))),
    ("group-header", "headers", "group",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(group="g1"))),
    ("shadow-header", "headers", "shadow",
     lambda a, t: a.publish([[envelope(t)], {}, {}], token=t, headers=task(shadow="celery.starmap"))),
    # -- the bytes
    ("not-utf-8", "bytes", "not UTF-8",
     lambda a, t: a.publish(b'[[{"action_type": "\xff\xfe"}], {}, {}]', token=t, headers=task())),
    ("not-json", "bytes", "not JSON",
     lambda a, t: a.publish(b"{not json", token=t, headers=task())),
    ("nan", "bytes", "NaN is not JSON",
     lambda a, t: a.publish(json.dumps([[envelope(t, payload={"servings": float("nan")})], {}, {}]).encode(),
                            token=t, headers=task())),
    ("too-deep-to-parse", "bytes", "nested too deeply",
     lambda a, t: a.publish(b"[" * 5000 + b"]" * 5000, token=t, headers=task())),
    # -- the body shape
    ("body-object", "body", "[args, kwargs, embed]",
     lambda a, t: a.publish({"hello": 1}, token=t, headers=task())),
    ("body-5", "body", "[args, kwargs, embed]", lambda a, t: a.publish(5, token=t, headers=task())),
    ("body-null", "body", "[args, kwargs, embed]", lambda a, t: a.publish(None, token=t, headers=task())),
    ("body-abc", "body", "[args, kwargs, embed]", lambda a, t: a.publish("abc", token=t, headers=task())),
    ("body-1-2", "body", "[args, kwargs, embed]", lambda a, t: a.publish([1, 2], token=t, headers=task())),
    ("kwargs-list", "body", "kwargs an object",
     lambda a, t: a.publish([[envelope(t)], [], {}], token=t, headers=task())),
    ("args-object", "body", "args a list",
     lambda a, t: a.publish([{"envelope": envelope(t)}, {}, {}], token=t, headers=task())),
    ("embed-5", "body", "embed must be an object",
     lambda a, t: a.publish([[envelope(t)], {}, 5], token=t, headers=task())),
    ("embed-callbacks", "body", "callbacks",
     lambda a, t: a.publish([[envelope(t)], {}, {"callbacks": [signature("celery.accumulate")]}], token=t,
                            headers=task())),
    ("embed-chord", "body", "chord",
     lambda a, t: a.publish([[envelope(t)], {}, {"chord": signature("x")}], token=t, headers=task())),
    ("embed-other-key", "body", "reply_to",
     lambda a, t: a.publish([[envelope(t)], {}, {"reply_to": "nautilus.recipe"}], token=t, headers=task())),
    # -- args and kwargs
    ("no-args", "call", "takes one argument", lambda a, t: a.publish([[], {}, {}], token=t, headers=task())),
    ("two-args", "call", "takes one argument",
     lambda a, t: a.publish([[envelope(t), envelope(t)], {}, {}], token=t, headers=task())),
    ("kwargs-envelope", "call", "takes one argument",
     lambda a, t: a.publish([[], {"envelope": envelope(t)}, {}], token=t, headers=task())),
    # -- the envelope
    ("envelope-string", "envelope", "must be a JSON object, not str",
     lambda a, t: a.publish([["a string"], {}, {}], token=t, headers=task())),
    ("no-action-type", "envelope", "no action_type",
     lambda a, t: a.publish([[envelope(t, action_type=None)], {}, {}], token=t, headers=task())),
    ("action-id-65-characters", "envelope", "action_id is longer than 64",
     lambda a, t: a.publish([[envelope(t, action_id="a" * 65)], {}, {}], token=t, headers=task())),
    ("action-id-nul", "envelope", "action_id contains a NUL",
     lambda a, t: a.publish([[envelope(t, action_id="ab\x00c")], {}, {}], token=t, headers=task())),
    ("correlation-id-number", "envelope", "correlation_id must be a string",
     lambda a, t: a.publish([[envelope(t, correlation_id=5)], {}, {}], token=t, headers=task())),
    ("sender-lone-surrogate", "envelope", "not Unicode text",
     lambda a, t: a.publish([[envelope(t, sender="\ud800")], {}, {}], token=t, headers=task())),
    ("action-type-too-long", "envelope", "longer than 255 bytes",
     lambda a, t: a.publish([[envelope(t, action_type="create." + "r" * 300 + ".pending")], {}, {}], token=t,
                            headers=task())),
    ("unhandled-type", "envelope", "does not handle explode.recipe.pending",
     lambda a, t: a.publish([[envelope(t, action_type="explode.recipe.pending")], {}, {}], token=t,
                            headers=task())),
    # -- the payload
    ("payload-list", "payload", "must be a JSON object, not list",
     lambda a, t: a.publish([[envelope(t, payload=[1])], {}, {}], token=t, headers=task())),
    ("payload-kombu-marker", "payload", "kombu type marker",
     lambda a, t: a.publish([[envelope(t, payload={"name": {"__type__": "bytes", "__value__": "x"}})], {}, {}],
                            token=t, headers=task())),
    ("payload-lone-surrogate", "payload", "not Unicode text",
     lambda a, t: a.publish([[envelope(t, payload={"name": "\udc00"})], {}, {}], token=t, headers=task())),
    ("payload-too-deep", "payload", "nested more than 100 deep",
     lambda a, t: a.publish([[envelope(t, payload={"name": deep(150)})], {}, {}], token=t, headers=task())),
]


def recipes_named(database_url, prefix):
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM recipes_recipe WHERE name LIKE %s", [prefix + "%"]).fetchone()[0]


@pytest.mark.parametrize("case, layer, reason, publish", CASES, ids=[case[0] for case in CASES])
def test_a_bad_message_is_dead_lettered_with_its_layer_answered_once_and_the_worker_goes_on(
        recipe, asker, module_bus, broker_url, case, layer, reason, publish):
    dead_letters(broker_url, wait=0)
    token = str(uuid.uuid4())
    publish(asker, token)
    started = time.monotonic()
    answer = module_bus.ask(KEY, {"name": f"valid-{token[:8]}"}, timeout=10)  # the worker still consumes
    assert answer.action_type == "create.recipe.success", answer.payload
    assert time.monotonic() - started < 5

    letters = dead_letters(broker_url, wait=0.2)
    assert [(letter["layer"], letter["service"]) for letter in letters] == [(layer, "recipe")], letters
    assert reason in letters[0]["reason"], letters[0]["reason"]
    replies = asker.drain(0.2) and asker.replies_to(token)
    assert len(replies) == 1, replies
    assert replies[0]["action_type"].endswith(".error")
    assert replies[0]["payload"]["code"] == "malformed_action"
    assert replies[0]["payload"]["details"] == {"layer": layer}
    assert recipe.process.poll() is None
    assert recipes_named(recipe.env["DATABASE_URL"], f"poison-{token[:8]}") == 0  # nothing of it was applied


def test_no_bad_message_stopped_the_worker(recipe):
    assert recipe.process.poll() is None
    assert "Unrecoverable error" not in recipe.log() and "CRITICAL" not in recipe.log()


# -- data the database refuses: answered at once, never retried -------------------------------


@pytest.fixture(scope="module")
def faulty(cloud):
    return cloud.start(FAULTY)


@pytest.mark.parametrize("payload, fragment", [
    ({"name": "nul \x00 byte"}, "NUL"),  # refused by the model's validation (invalid) or by PostgreSQL
    ({"name": "huge", "servings": 2 ** 40}, "out of range"),  # integer column
], ids=["nul-byte", "integer-out-of-range"])
def test_data_the_database_refuses_is_an_error_at_once_never_retried(recipe, module_bus, broker_url, payload,
                                                                      fragment):
    dead_letters(broker_url, wait=0)
    started = time.monotonic()
    reply = module_bus.ask(KEY, payload, timeout=10)
    elapsed = time.monotonic() - started
    assert reply.action_type == "create.recipe.error"
    assert reply.payload["code"] in ("invalid_data", "invalid"), reply.payload
    if reply.payload["code"] == "invalid_data":
        assert fragment in reply.payload["message"], reply.payload
    assert elapsed < 2, elapsed
    assert dead_letters(broker_url, wait=0.2) == []  # neither retried nor dead-lettered as internal_error
    assert "Retry in" not in recipe.log()


def test_a_nul_character_the_handler_writes_unvalidated_is_invalid_data_at_once(faulty, module_bus, broker_url):
    """The model service's validation refuses a NUL itself (``invalid``); a handler that writes it as it
    came meets PostgreSQL's refusal (a DataError): answered ``invalid_data`` at once, never retried."""
    dead_letters(broker_url, wait=0)
    started = time.monotonic()
    reply = module_bus.ask("note.faulty.pending", {"name": "nul \x00 byte", "count": 1}, timeout=10)
    assert time.monotonic() - started < 2
    assert reply.action_type == "note.faulty.error"
    assert reply.payload["code"] == "invalid_data" and "NUL" in reply.payload["message"], reply.payload
    assert reply.payload["details"] == {"error": "DataError"}
    assert dead_letters(broker_url, wait=0.2) == []
    assert "Retry in" not in faulty.log()


def test_an_integrity_error_of_the_handlers_own_write_is_an_error_never_retried(faulty, module_bus, broker_url):
    dead_letters(broker_url, wait=0)
    reply = module_bus.ask("clash.faulty.pending", {}, timeout=10)
    assert reply.action_type == "clash.faulty.error"
    assert reply.payload["code"] == "invalid_data" and reply.payload["details"] == {"error": "IntegrityError"}
    assert dead_letters(broker_url, wait=0.2) == []
    assert "Retry in" not in faulty.log()
    # recorded like any answer: a redelivered copy gets the same one
    again = module_bus.ask("read.faulty.pending", {"query": "{ all_models(first: 1) { pk } }"}, timeout=10)
    assert again.action_type == "read.faulty.success"


def test_a_failing_handler_is_still_retried_then_dead_lettered_at_the_handler_layer(faulty, module_bus,
                                                                                    broker_url):
    dead_letters(broker_url, wait=0)
    reply = module_bus.ask("explode.faulty.pending", {"n": 1}, timeout=20)
    assert reply.payload["code"] == "internal_error"
    letters = dead_letters(broker_url)
    assert [(letter["layer"], letter["attempts"]) for letter in letters] == [("handler", 4)]
    assert faulty.log().count("Retry in") >= 3  # the signed retries were admitted


def test_an_unknown_queue_type_is_a_check_error():
    from django.test import override_settings

    from nautilus_core.checks import check_queues

    with override_settings(NAUTILUS={"QUEUE_TYPE": "stream"}):
        assert [error.id for error in check_queues()] == ["nautilus.E004"]
    assert check_queues() == []
