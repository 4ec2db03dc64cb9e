"""Property-based fuzzing of every layer of a message against ONE running worker (RabbitMQ, PostgreSQL).

Hypothesis makes batches of messages, each spoiled at one layer (content type and encoding, the
Celery headers, the bytes, the body shape, args/kwargs, the envelope, the payload) or valid, and
publishes them raw to the recipe service with a ``reply_to`` and a correlation id of their own.
After each batch: a valid ask is answered within 2 s, the queue has drained, and every message is
accounted for: exactly one reply each, a dead letter exactly for those refused (with a layer no
earlier than the one spoiled), and no handler failure (``internal_error``).

``NAUTILUS_FUZZ_EXAMPLES`` sets the number of batches (default 50, CI's bounded run, with the
examples derandomized there; e.g. 2000 for a long run).
"""
import json
import os
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection, Queue

from nautilus_core.bus import connect
from nautilus_core.intake import LAYERS
from nautilus_core.testing import dead_letters

from .conftest import RECIPES
from .test_poison import Asker

EXAMPLES = int(os.environ.get("NAUTILUS_FUZZ_EXAMPLES", "50"))
TYPES = [f"{method}.recipe.pending" for method in ("create", "read", "update", "delete")]
FIELDS = ["name", "description", "servings", "minutes", "vegetarian", "id", "pk", "query", "variables"]

# -- strategies: JSON, then each layer ---------------------------------------------------------

text = st.text(max_size=20)  # NUL included
any_text = st.text(st.characters(exclude_categories=()), max_size=20)  # lone surrogates too
scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False, allow_infinity=False)
           | text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(FIELDS) | text, inner, max_size=4), max_leaves=10)
payloads = st.dictionaries(st.sampled_from(FIELDS) | text, json_values, max_size=5) | st.fixed_dictionaries(
    {"query": st.sampled_from(["{ all_models(first: 2) { pk name } }", "{", "{ all_models { nope } }"])})
header_scalars = (st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats(allow_nan=False)
                  | text)
header_values = st.recursive(header_scalars, lambda inner: st.lists(inner, max_size=3)
                             | st.dictionaries(text, inner, max_size=3), max_leaves=6)


@st.composite
def envelopes(draw, token):
    return {"action_type": draw(st.sampled_from(TYPES)), "payload": draw(payloads),
            "action_id": str(uuid.uuid4()), "correlation_id": token,
            "sender": draw(st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20))}


@st.composite
def messages(draw):
    """``(layer spoiled or "valid", token, body bytes, headers, content type, encoding, routing key)``."""
    token = str(uuid.uuid4())
    layer = draw(st.sampled_from(["valid", *LAYERS[:-1]]))
    envelope = draw(envelopes(token))
    headers = {"task": "nautilus.action", "id": str(uuid.uuid4())}
    if draw(st.booleans()):  # what Celery's own publisher adds
        headers.update(lang="py", eta=None, expires=None, retries=0, timelimit=[None, None], group=None,
                       root_id=headers["id"], parent_id=None, argsrepr="x", kwargsrepr="{}")
    body = [[envelope], {}, draw(st.sampled_from([{}, {"callbacks": None, "errbacks": None, "chain": None,
                                                        "chord": None}]))]
    content_type, encoding = "application/json", draw(st.sampled_from(["utf-8", "UTF-8", None]))
    raw = None
    if layer == "content_type":
        content_type, encoding = draw(st.sampled_from([
            ("application/x-python-serialize", "binary"), ("text/plain", "utf-8"), ("application/data", "binary"),
            ("application/x-yaml", "utf-8"), ("application/json", "latin-1"), ("application/json", "utf-16"),
            ("application/json; charset=utf-8", "utf-8"), (None, None)]) | st.tuples(text, text))
    elif layer == "headers":
        spoil = draw(st.sampled_from(["task", "id", "feature", "retries", "drop"]))
        if spoil == "task":
            headers["task"] = draw(st.sampled_from(["celery.starmap", "celery.accumulate", "celery.chord_unlock",
                                                    "celery.backend_cleanup", "celery.chunks", "celery.group",
                                                    "celery.map", "celery.chain", "celery.chord"]) | header_values)
        elif spoil == "id":
            headers["id"] = draw(header_values)
        elif spoil == "feature":
            name = draw(st.sampled_from(["eta", "countdown", "expires", "timelimit", "callbacks", "errbacks", "chain",
                                         "chord", "group", "group_index", "shadow", "link", "link_error"]))
            headers[name] = draw(header_values)
        elif spoil == "retries":
            headers["retries"] = draw(header_values)
            headers["nautilus_retry"] = draw(text)
        else:
            del headers[draw(st.sampled_from(["task", "id"]))]
    elif layer == "bytes":
        good = json.dumps(body).encode()
        raw = draw(st.binary(max_size=200) | st.just(good[:len(good) // 2])
                   | st.just(good.replace(b"[[", b"[[NaN, ", 1)) | st.just(b"[" * 3000)
                   | st.just("\ufeff".encode() + good) | st.just(good.decode().encode("utf-16")))
    elif layer == "body":
        body = draw(json_values | st.tuples(json_values, json_values).map(list)
                    | st.tuples(json_values, json_values, json_values).map(list)
                    | st.tuples(st.just([envelope]), st.just({}), json_values).map(list))
    elif layer == "call":
        body = [draw(st.lists(st.just(envelope) | json_values, max_size=3)),
                draw(st.dictionaries(st.sampled_from(["envelope", "x"]) | text, st.just(envelope) | json_values,
                                     max_size=2)), {}]
    elif layer == "envelope":
        field = draw(st.sampled_from(["action_type", "action_id", "correlation_id", "sender", "sent_at", "drop",
                                      "not-an-object"]))
        if field == "drop":
            del envelope["action_type"]
        elif field == "not-an-object":
            body[0] = [draw(json_values.filter(lambda v: not isinstance(v, dict)))]
        elif field == "correlation_id":  # a valid one would be answered under another id: the test's only
            envelope[field] = draw(json_values.filter(lambda v: v is not None and not isinstance(v, str))
                                   | st.text(min_size=256, max_size=300) | st.just("nul\x00"))
        else:
            envelope[field] = draw(json_values | st.text(min_size=250, max_size=400) | any_text
                                   | st.sampled_from(["explode.recipe.pending", "delete.recipe.success",
                                                      "create.recipe", "a" * 65]))
    elif layer == "payload":
        envelope["payload"] = draw(st.sampled_from([
            [1], "x", 5, None, {"name": {"__type__": "bytes", "__value__": "x"}}, {"name": "\ud800"},
            {"name": {"__type__": "datetime", "__value__": "2020-01-01T00:00:00"}}])
            | json_values.filter(lambda v: not isinstance(v, dict)) | st.just(_deep(120)))
    raw = raw if raw is not None else json.dumps(body).encode()
    return layer, token, raw, headers, content_type, encoding, draw(st.sampled_from(TYPES))


def _deep(n):
    value = "bottom"
    for _ in range(n):
        value = {"name": value}
    return value


# -- the run ---------------------------------------------------------------------------------


class Figures:
    def __init__(self):
        self.sent, self.batches, self.refused, self.handled, self.by_layer = 0, 0, 0, 0, {}
        self.started = time.monotonic()


@pytest.fixture(scope="module")
def worker(cloud):
    return cloud.start(RECIPES)


@pytest.fixture(scope="module")
def fuzz(worker, broker_url):
    asker, bus, figures = Asker(broker_url), connect(broker_url, sender="fuzz"), Figures()
    dead_letters(broker_url, wait=0)
    yield worker, asker, bus, figures
    figures.seconds = round(time.monotonic() - figures.started, 1)
    print("\nfuzz:", json.dumps({k: v for k, v in vars(figures).items() if k != "started"}))
    asker.close()
    bus.close()


def ready_messages(broker_url, queue):
    with Connection(broker_url) as conn:
        return Queue(queue, channel=conn.channel(), no_declare=True).queue_declare(passive=True).message_count


@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=list(HealthCheck))
@given(batch=st.lists(messages(), min_size=1, max_size=8))
def test_every_message_is_answered_once_and_refused_ones_are_dead_lettered(fuzz, broker_url, batch):
    worker, asker, bus, figures = fuzz
    producer, exchange = asker.producer, asker.exchange
    for layer, token, raw, headers, content_type, encoding, key in batch:
        producer.publish(raw, routing_key=key, headers=headers, content_type=content_type, content_encoding=encoding,
                         reply_to=asker.queue.name, correlation_id=token, declare=[exchange])
    figures.sent += len(batch)
    figures.batches += 1

    started = time.monotonic()
    reply = bus.ask("create.recipe.pending", {"name": "fuzz-valid"}, timeout=10)
    assert reply.action_type == "create.recipe.success", reply.payload
    assert time.monotonic() - started < 2, "a valid ask waited more than 2 s"

    tokens = {token: layer for layer, token, *_ in batch}
    deadline = time.monotonic() + 20
    while not all(asker.replies_to(token) for token in tokens):
        assert time.monotonic() < deadline, f"unanswered: {[t for t in tokens if not asker.replies_to(t)]}"
        asker.drain(0.05)
    asker.drain(0.05)
    assert ready_messages(broker_url, "nautilus.recipe") == 0  # the queue drained
    letters = {_token_of(letter): letter for letter in dead_letters(broker_url, wait=0.05)}
    assert set(letters) <= set(tokens), letters.keys() - set(tokens)
    for token, spoiled in tokens.items():
        replies = asker.replies_to(token)
        assert len(replies) == 1, replies  # exactly one answer
        refused = replies[0]["payload"].get("code") == "malformed_action"
        assert replies[0]["payload"].get("code") != "internal_error", (spoiled, replies[0], letters.get(token))
        assert (token in letters) == refused, (spoiled, replies[0], letters.get(token))
        if refused:
            layer = letters[token]["layer"]
            figures.refused += 1
            figures.by_layer[layer] = figures.by_layer.get(layer, 0) + 1
            assert spoiled != "valid", letters[token]
            assert LAYERS.index(layer) >= LAYERS.index(spoiled), (spoiled, letters[token])
        else:
            figures.handled += 1
            assert spoiled not in ("content_type", "bytes"), (spoiled, replies[0])
    asker.replies.clear()
    assert worker.process.poll() is None


def _token_of(letter):
    """The correlation id of a dead letter: the message's, or its envelope's."""
    body = letter.get("body")
    return letter.get("correlation_id") or (body.get("correlation_id") if isinstance(body, dict) else None)
