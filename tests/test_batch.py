"""Group commit (``nautilus_core.batch``) with a real worker on RabbitMQ (and Redis) and PostgreSQL.

The worker is stopped while the actions are sent, so that when it starts again it takes them
from its queue together and applies them in batches: the ``nautilus_batch_actions`` histogram
of its ``/metrics`` shows it.
"""
import re
import urllib.request
import uuid

import pytest

from nautilus_core.testing import ServiceProcess

from .test_delivery import FAULTY, count_rows
from .test_heartbeat import wait
from .test_poison_fuzz import ready_messages

pytestmark = pytest.mark.brokers("rabbitmq", "redis")


@pytest.fixture(scope="module")
def faulty(cloud):
    env = cloud.env(FAULTY)
    process = cloud.start(FAULTY, env=env, http=True)
    return type("Faulty", (), {"env": env, "process": process})


def sent_while_stopped(cloud, faulty, bus, asks):
    """Stop the worker, send ``asks`` (``(type, payload, action id or None)``), start it again; return the
    replies' futures."""
    faulty.process.stop()
    futures = [bus._send_ask(action_type, payload, action_id=action_id)[0] for action_type, payload, action_id in asks]
    restart(cloud, faulty)
    return futures


def restart(cloud, faulty):
    faulty.process = ServiceProcess(FAULTY, faulty.env, log_dir=cloud.log_dir,
                                    http_port=faulty.process.http_port).start()
    cloud.processes.append(faulty.process)
    faulty.process.wait_ready()


def batches(url):
    """``(batches applied, actions in them, batches of more than one)`` from the worker's metrics."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()

    def value(name, labels=""):
        found = re.search(rf'^{name}{{{labels}service="faulty"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    count = value("nautilus_batch_actions_count")
    return count, value("nautilus_batch_actions_sum"), count - value("nautilus_batch_actions_bucket", 'le="1.0",')


def test_a_refused_and_a_failing_action_leave_the_rest_of_their_batch_applied(cloud, faulty, bus):
    tag = uuid.uuid4().hex[:8]
    asks = [("create.faulty.pending", {"name": f"{tag}-{n}"}, None) for n in range(12)]
    asks.insert(3, ("refuse.faulty.pending", {"name": f"{tag}-refused"}, None))
    asks.insert(7, ("explode.faulty.pending", {"n": 1}, None))
    futures = sent_while_stopped(cloud, faulty, bus, asks)
    replies = [future.result(timeout=30) for future in futures]

    database = faulty.env["DATABASE_URL"]
    for (action_type, payload, _), reply in zip(asks, replies):
        if action_type == "create.faulty.pending":
            assert reply.action_type == "create.faulty.success", reply.payload
            assert reply.payload["name"] == payload["name"]
            assert count_rows(database, "recipes_recipe", payload["name"]) == 1
    refused, exploded = replies[3], replies[7]
    assert refused.action_type == "refuse.faulty.error" and refused.payload["code"] == "refused"
    assert count_rows(database, "recipes_recipe", f"{tag}-refused") == 0  # its savepoint undid the row
    assert exploded.action_type == "explode.faulty.error" and exploded.payload["code"] == "internal_error"
    assert count_rows(database, "recipes_recipe", "never kept") == 0

    count, actions, larger = batches(faulty.process.url)
    assert larger >= 1, (count, actions)  # some were applied together
    assert actions == 12, (count, actions)  # the twelve creates, each once; the other two went to the task


def test_an_action_twice_in_one_batch_is_applied_once_and_answered_twice(cloud, faulty, bus):
    """The same action id twice in one batch (a copy, as a redelivery would bring): its second
    savepoint finds it recorded, and the task answers it from the record."""
    name = f"twice-{uuid.uuid4().hex[:8]}"
    action_id = str(uuid.uuid4())
    asks = [("create.faulty.pending", {"name": name}, action_id)] * 2
    asks += [("create.faulty.pending", {"name": f"{name}-{n}"}, None) for n in range(3)]
    first, second, *others = [future.result(timeout=30) for future in sent_while_stopped(cloud, faulty, bus, asks)]
    assert first.action_type == second.action_type == "create.faulty.success"
    assert first.payload == second.payload and first.action_id == second.action_id  # the recorded answer
    assert count_rows(faulty.env["DATABASE_URL"], "recipes_recipe", name) == 1
    assert all(reply.action_type == "create.faulty.success" for reply in others)
    assert "already handled create.faulty.pending" in faulty.process.log()



def test_a_copy_in_a_batch_is_answered_with_the_fate_of_the_first(cloud, faulty, bus, broker_url):
    """A client's retry under the same action id, in one batch with the first try, which arrived past
    its deadline: the first is refused, and the retry answered from that record (not applied before it)."""
    from datetime import datetime, timedelta, timezone

    from nautilus_core.actions import Action
    from nautilus_core.bus import TASK_NAME

    name, action_id = f"late-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    replies = bus._reply_listener()
    faulty.process.stop()
    # the first try as a worker would find it after a long pause: past its deadline (sent without a TTL)
    late = Action("create.faulty.pending", {"name": name}, correlation_id=str(uuid.uuid4()), sender="test",
                  action_id=action_id, deadline=(datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat())
    futures = [replies.expect(late.correlation_id)]
    bus.app.send_task(TASK_NAME, args=[late.to_dict()], task_id=action_id, exchange=bus.exchange,
                      routing_key=late.action_type, reply_to=replies.queue.name)
    if broker_url.startswith("amqp"):  # first in the queue: the others go on another connection
        wait(lambda: ready_messages(broker_url, "nautilus.faulty") == 1, timeout=10)
    futures.append(bus._send_ask("create.faulty.pending", {"name": f"{name}-other"})[0])
    futures.append(bus._send_ask("create.faulty.pending", {"name": name}, 30, action_id=action_id)[0])
    restart(cloud, faulty)
    first, other, retry = [future.result(timeout=30) for future in futures]
    assert first.action_type == retry.action_type == "create.faulty.error", (first.payload, retry.payload)
    assert first.payload["code"] == retry.payload["code"] == "deadline_exceeded"
    assert other.action_type == "create.faulty.success"
    assert count_rows(faulty.env["DATABASE_URL"], "recipes_recipe", name) == 0
