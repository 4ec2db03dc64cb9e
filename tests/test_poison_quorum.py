"""Quorum queues on the local RabbitMQ (``NAUTILUS_QUEUE_TYPE=quorum``), and queues that exist with other arguments.

In a virtual host of this module's own: a deployment that had an unbounded dead-letter queue and
classic service queues. A message that kills its worker every time stops being delivered after
the delivery limit, and lands in ``nautilus.dead`` (layer ``broker``); queues whose arguments
changed are used as they are, with a warning, instead of stopping the worker.
"""
import json
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import pytest
from kombu import Connection, Queue

from nautilus_core.bus import connect
from nautilus_core.testing import ServiceProcess, manage, virtual_host

from .conftest import BROKER_URL, RUN_ID

FAULTY = "tests.faulty.settings"


@pytest.fixture(scope="module")
def vhost():
    with virtual_host(BROKER_URL, f"nautilus-test-{RUN_ID}-quorum") as url:
        assert url != BROKER_URL, "these tests need rabbitmqctl (a virtual host of their own)"
        with Connection(url) as conn:  # the dead-letter queue of an earlier version: no bounds
            Queue("nautilus.dead", durable=True)(conn.channel()).declare()
        yield url


@pytest.fixture(scope="module")
def env(cloud, vhost):
    return {**cloud.env(FAULTY), "NAUTILUS_BROKER_URL": vhost, "NAUTILUS_QUEUE_TYPE": "quorum",
            "NAUTILUS_DELIVERY_LIMIT": "1"}


def queue_types(vhost):
    name = urlsplit(vhost).path.lstrip("/")
    out = subprocess.run(["rabbitmqctl", "list_queues", "-q", "-p", name, "name", "type", "arguments"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines() if "\t" in line}


def wait_for_exit(process, timeout):
    deadline = time.monotonic() + timeout
    while process.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.process.poll() is not None


def test_a_message_that_kills_its_worker_every_time_stops_after_the_delivery_limit(cloud, vhost, env):
    worker = cloud.start(FAULTY, env=env)
    assert queue_types(vhost)["nautilus.faulty"][0] == "quorum"
    bus = connect(vhost, sender="quorum")
    try:
        assert bus.ask("create.faulty.pending", {"name": "before"}, timeout=10).action_type == "create.faulty.success"
        bus.publish("crash.faulty.pending", {"n": 1})
        started, deaths = time.monotonic(), 0
        while wait_for_exit(worker, 8):  # died on it: the next worker gets it again, up to the limit
            deaths += 1
            assert deaths <= 3, "the poison message was delivered past its limit"
            worker = ServiceProcess(FAULTY, env, log_dir=cloud.log_dir).start()
            cloud.processes.append(worker)
            deadline = time.monotonic() + 60  # ready, or dead on the message before it said so
            while worker.process.poll() is None and " ready." not in worker.log():
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.05)
        seconds = round(time.monotonic() - started, 1)
        print(f"\nquorum delivery limit 1: {deaths} worker deaths, then dead-lettered by RabbitMQ; {seconds} s")
        assert deaths == 2  # the first delivery and one more
        assert bus.ask("create.faulty.pending", {"name": "after"}, timeout=10).action_type == "create.faulty.success"

        # a failing handler's signed retries work on a quorum queue too
        reply = bus.ask("explode.faulty.pending", {"n": 2}, timeout=30)
        assert reply.payload["code"] == "internal_error"
        assert "exists with other arguments" in worker.log()  # the old unbounded nautilus.dead, kept as it is

        listing = manage(FAULTY, "dead", "list", "--json", env=env)
        letters = [json.loads(line) for line in listing.stdout.splitlines() if line.startswith("{")]
        broker = [letter for letter in letters if letter["layer"] == "broker"]
        assert len(broker) == 1, letters
        assert "delivery_limit" in broker[0]["reason"] and broker[0]["service"] == "faulty"
        assert broker[0]["routing_key"] == "crash.faulty.pending"
        assert [letter["layer"] for letter in letters if letter is not broker[0]] == ["handler"]
        assert "[broker]" in manage(FAULTY, "dead", "list", env=env).stdout
    finally:
        bus.close()
        worker.stop()


def test_a_queue_declared_with_other_arguments_is_used_as_it_is(cloud, vhost, env):
    """Back to classic queues while nautilus.faulty is a quorum queue: the worker warns and goes on."""
    classic = {**env, "NAUTILUS_QUEUE_TYPE": "classic"}
    worker = ServiceProcess(FAULTY, classic, log_dir=cloud.log_dir).start()
    cloud.processes.append(worker)
    worker.wait_ready()
    bus = connect(vhost, sender="classic")
    try:
        name = f"classic-{uuid.uuid4().hex[:6]}"
        assert bus.ask("create.faulty.pending", {"name": name}, timeout=10).payload["name"] == name
        assert "the queue nautilus.faulty exists with other arguments" in worker.log()
        assert queue_types(vhost)["nautilus.faulty"][0] == "quorum"
    finally:
        bus.close()
        worker.stop()
