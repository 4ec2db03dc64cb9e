"""The brokers nautilus runs on: an unsupported one is refused in one line; Redis keeps RabbitMQ's habits.

- ``NAUTILUS_BROKER_URL`` with any scheme but RabbitMQ's, Redis's or the embedded bus's is
  refused when the settings load: ``ask``, ``runservice`` and ``cloud up`` exit non-zero with
  one line that lists the supported schemes, and never repeat the rest of the URL.
- On Redis (``nautilus_core.redis_transport``): a message put back after its consumer died
  goes to its own queue only, and a reply to an asker that is gone expires.
"""
import os
import subprocess
import sys
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu import Exchange, Producer, Queue, binding

from nautilus_core.actions import Action
from nautilus_core.brokers import SCHEMES, UnsupportedBroker, broker_of, connection_options
from nautilus_core.brokers import connection as broker_connection
from nautilus_core.bus import REPLY_TTL

from .conftest import PROJECT_DIR

SUPPORTED_LINE = ("use amqp://, amqps:// or pyamqp:// (RabbitMQ), redis:// or rediss:// (Redis), "
                  "or leave it unset for the embedded bus (filesystem://)")

schemes = st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9+.-]{0,15}\Z")
secrets = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)


@given(scheme=schemes, rest=secrets)
@settings(max_examples=300, deadline=None)
def test_a_url_is_accepted_exactly_when_its_scheme_is_supported(scheme, rest):
    url = f"{scheme}://user:{rest}@host/"
    if scheme.lower() in SCHEMES:
        assert broker_of(url) == SCHEMES[scheme.lower()]
        return
    with pytest.raises(UnsupportedBroker) as refused:
        broker_of(url)
    # one line, naming the scheme and nothing else of the URL (which may hold a password)
    assert str(refused.value) == f"NAUTILUS_BROKER_URL: unsupported broker {scheme.lower()!r}; {SUPPORTED_LINE}"


@given(text=secrets)
def test_what_is_not_a_url_is_refused(text):
    if "://" in text and text.split("://")[0].lower() in SCHEMES:
        return
    with pytest.raises(UnsupportedBroker):
        broker_of(text)


def test_each_broker_gets_its_transport(monkeypatch):
    monkeypatch.delenv("NAUTILUS_REDIS_VISIBILITY_TIMEOUT", raising=False)  # the Redis pass sets a short one
    assert connection_options("amqp://guest:guest@127.0.0.1//")["transport"] is None  # kombu's py-amqp
    redis = connection_options("redis://127.0.0.1:6379/0")
    assert redis["transport"] == "nautilus_core.redis_transport:Transport" and redis["ssl"] is None
    assert redis["transport_options"]["visibility_timeout"] > 30  # above the longest retry backoff
    import ssl

    assert connection_options("rediss://127.0.0.1:6380/0")["ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert connection_options("filesystem://")["transport"] == "nautilus_core.embedded:Transport"


@pytest.mark.parametrize("command", [["ask", "create.recipe.pending"], ["publish", "create.recipe.pending"],
                                     ["runservice", "0"], ["cloud", "up", "examples/recipe_book", "--port", "0"]])
@pytest.mark.parametrize("url", ["mongodb://admin:hunter2@127.0.0.1/x", "sqla+sqlite:///x.db", "127.0.0.1:5672"])
def test_commands_refuse_an_unsupported_broker_in_one_line(command, url, tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(PROJECT_DIR / "manage.py"), *command], cwd=PROJECT_DIR,
                          env={"PATH": "/usr/bin:/bin", "NAUTILUS_BROKER_URL": url, "NAUTILUS_DEMO": "1",
                               "NAUTILUS_VAR_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("manage.py: NAUTILUS_BROKER_URL: ")
    assert done.stderr.rstrip().endswith(SUPPORTED_LINE)
    assert "hunter2" not in done.stderr
    assert time.monotonic() - started < 30  # at once: nothing waits for a broker


# -- Redis ---------------------------------------------------------------------------------------

@pytest.mark.brokers("redis")
def test_redis_puts_an_unacknowledged_message_back_on_its_own_queue_only(broker_url):
    """kombu would route it again through the topic exchange: a second copy for every other queue."""
    exchange = Exchange(f"test.restore.{uuid.uuid4().hex}", type="topic", durable=True)
    mine, other = (Queue(f"test.restore.{name}.{uuid.uuid4().hex}", exchange=exchange, durable=True,
                         bindings=[binding(exchange, routing_key="restore.test.pending")])
                   for name in ("mine", "other"))
    # an unacked record of this test's own, so its short timeout puts back nobody else's actions
    isolated = {f"unacked{suffix}": f"test.unacked{suffix}.{uuid.uuid4().hex}" for suffix in ("", "_index", "_mutex")}
    isolated = {"unacked_key": isolated["unacked"], "unacked_index_key": isolated["unacked_index"],
                "unacked_mutex_key": isolated["unacked_mutex"]}
    dead = broker_connection(broker_url, **isolated)
    channel = dead.channel()
    for queue in (mine, other):
        queue(channel).declare()
    Producer(channel).publish({"n": 1}, exchange=exchange, routing_key="restore.test.pending", serializer="json")
    assert other(channel).get(no_ack=True).payload == {"n": 1}
    taken = mine(channel).get(no_ack=False)  # ...and its consumer dies: never acknowledged, never closed
    assert taken.payload == {"n": 1} and mine(channel).get() is None

    with broker_connection(broker_url, visibility_timeout=1, **isolated) as sweeper:
        time.sleep(1.5)
        sweeper.default_channel.qos.restore_visible(num=100, interval=1)
        again = mine(sweeper.default_channel).get(no_ack=True)
        assert again is not None and again.payload == {"n": 1}
        assert again.delivery_info["redelivered"] is True
        assert other(sweeper.default_channel).get(no_ack=True) is None  # no second copy elsewhere
        for queue in (mine, other):
            queue(sweeper.default_channel).delete()
    dead.release()


@pytest.mark.brokers("redis")
def test_redis_takes_with_blmove_and_leaves_nothing_in_the_taking_list(broker_url):
    """Messages consumed with acks pass through the consumer's taking list and leave it empty."""
    import redis

    queue = Queue(f"test.taking.{uuid.uuid4().hex}", durable=True)
    with broker_connection(broker_url) as connection:
        channel = connection.default_channel
        queue(channel).declare()
        for n in range(20):
            Producer(channel).publish({"n": n}, routing_key=queue.name, serializer="json")
        received = []
        consumer = connection.Consumer([queue], callbacks=[lambda body, message: (received.append(body["n"]),
                                                                                   message.ack())])
        with consumer:
            while len(received) < 20:
                connection.drain_events(timeout=5)
        taking_list = channel._taking_list(queue.name)
        client = redis.Redis.from_url(broker_url)
        assert sorted(received) == list(range(20))
        assert client.llen(taking_list) == 0 and client.exists(taking_list) == 0
        queue(channel).delete()
        client.close()


@pytest.mark.brokers("redis")
def test_redis_restores_what_a_consumer_took_before_it_could_record_it(broker_url):
    """kombu's BRPOP loses a message whose consumer dies after the pop and before it is recorded as
    unacknowledged (celery/celery#4354); here it was moved to the consumer's taking list, and is put
    back, marked redelivered, once that consumer has been silent for a visibility timeout."""
    import json

    import redis

    prefix = os.environ.get("NAUTILUS_REDIS_KEY_PREFIX", "")
    queue = Queue(f"test.taking.{uuid.uuid4().hex}", durable=True)
    client = redis.Redis.from_url(broker_url)
    with broker_connection(broker_url) as dead:
        channel = dead.default_channel
        queue(channel).declare()
        Producer(channel).publish({"n": 1}, routing_key=queue.name, serializer="json")
        # the dead consumer's last steps: it said it was alive long ago, then took the message
        taking_list = channel._taking_list(queue.name)
        client.zadd(prefix + "_nautilus.takers", {json.dumps([queue.name, taking_list]): time.time() - 60})
        assert client.lmove(prefix + queue.name, taking_list, "RIGHT", "LEFT") is not None
        assert queue(channel).get() is None  # gone from the queue: BRPOP would have lost it here
    with broker_connection(broker_url, visibility_timeout=1) as sweeper:
        sweeper.default_channel.qos.restore_visible(num=100, interval=1)
        again = queue(sweeper.default_channel).get(no_ack=True)
        assert again is not None and again.payload == {"n": 1}
        assert again.delivery_info["redelivered"] is True
        assert client.llen(taking_list) == 0
        assert queue(sweeper.default_channel).get() is None  # put back once
        queue(sweeper.default_channel).delete()
    client.close()


@pytest.mark.brokers("redis")
def test_redis_drops_the_replies_to_an_asker_that_is_gone(broker_url, bus):
    """kombu sets a queue's x-expires only from the process that declared it, never from the
    worker that replies: without the reply's expiration they stayed in Redis for good."""
    import redis

    from nautilus_core.brokers import redis_transport_options

    reply_queue = f"nautilus.reply.{uuid.uuid4().hex}"  # an asker that asked, then died
    bus.reply(reply_queue, Action("create.recipe.success", {"id": 1}, correlation_id=str(uuid.uuid4()),
                                  sender="test"))
    prefix = redis_transport_options()["global_keyprefix"]
    client = redis.Redis.from_url(broker_url)
    try:
        assert client.llen(prefix + reply_queue) == 1
        assert 0 < client.pttl(prefix + reply_queue) <= REPLY_TTL * 1000
    finally:
        client.delete(prefix + reply_queue)
        client.close()
