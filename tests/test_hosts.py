"""Scale out across machines: workers of one service on hosts of their own, one of them cut off mid-stream.

Each host is a network namespace the test makes (``ip netns``), joined to this machine by a veth
pair: the host has its own loopback and one address, and reaches the broker and the database
only through the host side of its link, where a TCP proxy of the test's (``BrokerProxy``)
forwards to RabbitMQ and PostgreSQL, which on this machine listen on 127.0.0.1 only. A worker
that assumed it shares a machine with either (or with another service) finds nothing there.

Everything made here (namespaces, veth pairs, proxies, workers) is removed by the ``hosts``
fixture, by name and by PID, also when the test fails. No iptables rule is made. It needs what this
machine's test runs have: root (CAP_NET_ADMIN) and iproute2's ``ip``.
"""
import json
import random
import subprocess
import time
import uuid
from concurrent.futures import wait
from urllib.parse import urlsplit

import pytest

from nautilus_core.bus import connect
from nautilus_core.testing import BrokerProxy, ServiceProcess, manage

from .conftest import RECIPES
from .test_fault import logged, recipe_rows, stream_asks, stream_length

pytestmark = pytest.mark.brokers("rabbitmq")

HANDLED = r"action recipe create\.recipe\.pending success"


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def free_subnet():
    """A third octet ``n`` such that no address of this machine is in 10.231.n.0/24."""
    used = ip("-4", "-o", "addr").stdout
    free = [n for n in range(1, 255) if f" 10.231.{n}." not in used]
    return random.choice(free)


def address_of(url):
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port


class Host:
    """A machine of the test's own: a network namespace with a veth link to this one.

    The host side of the link is ``10.231.n.1/30``, the host's end ``10.231.n.2/30``; on the host
    side, a proxy for the broker and one for the database listen at ``10.231.n.1``.
    """

    def __init__(self, tag, number, broker_url, database_url):
        self.namespace = f"nautilus-{tag}-{number}"
        self.link, self.peer = f"nh{tag}{number}", f"nn{tag}{number}"  # at most 15 characters
        subnet = free_subnet()
        self.address, self.own_address = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
        self.upstreams = address_of(broker_url), address_of(database_url)
        self.broker = self.database = None
        self.workers = []

    def make(self):
        ip("netns", "add", self.namespace)
        ip("link", "add", self.link, "type", "veth", "peer", "name", self.peer, "netns", self.namespace)
        ip("addr", "add", f"{self.address}/30", "dev", self.link)
        ip("link", "set", self.link, "up")
        ip("-n", self.namespace, "addr", "add", f"{self.own_address}/30", "dev", self.peer)
        ip("-n", self.namespace, "link", "set", self.peer, "up")
        ip("-n", self.namespace, "link", "set", "lo", "up")
        self.broker = BrokerProxy(self.upstreams[0], host=self.address)
        self.database = BrokerProxy(self.upstreams[1], host=self.address)
        return self

    def start(self, settings, env, log_dir):
        """A worker of ``settings`` on this host, on the broker and database of ``env`` as seen from here."""
        env = {**env, "NAUTILUS_BROKER_URL": self.broker.url(env["NAUTILUS_BROKER_URL"]),
               "DATABASE_URL": self.database.url(env["DATABASE_URL"])}
        worker = ServiceProcess(settings, env, log_dir=log_dir, netns=self.namespace,
                                name=f"{settings.rsplit('.', 2)[-2]}-{self.namespace}")
        self.workers.append(worker.start())
        return worker

    def cut(self):
        """Cut the link: nothing more goes in or out; then the broker and the database see the host's
        connections end (as they do once their heartbeats or keepalives go unanswered), at once."""
        ip("link", "set", self.link, "down")
        self.broker.cut()
        self.database.cut()

    def remove(self):
        for worker in self.workers:
            worker.kill()  # by PID; a host cut off cannot shut down warmly
        for proxy in (self.broker, self.database):
            if proxy is not None:
                proxy.close()
        ip("link", "del", self.link, check=False)  # its peer goes with it
        ip("netns", "del", self.namespace, check=False)


@pytest.fixture
def hosts(broker_url, databases):
    """``hosts()`` makes a host; every one is removed after the test, whatever its outcome."""
    tag, made = uuid.uuid4().hex[:6], []

    def host():
        made.append(Host(tag, len(made) + 1, broker_url, databases.url))
        return made[-1].make()

    yield host
    for made_host in reversed(made):
        made_host.remove()
    left = ip("netns", "list").stdout + ip("link").stdout
    assert tag not in left, f"left behind: {left}"


@pytest.mark.slow
def test_two_hosts_and_one_cut_off_mid_stream(cloud, broker_url, hosts):
    """Two workers of the recipe service, each on a host of its own, share a stream of 3,000 creates;
    once a third is answered, one host's link is cut.

    The cut host's worker keeps running, but can neither acknowledge nor commit: what it held
    goes to the other host's worker (applied there, or answered from the record if the cut one
    had committed it). Afterwards: exactly one row and one answer per ask.
    """
    sent = stream_length(broker_url, 3_000)
    env = cloud.env(RECIPES)
    manage(RECIPES, "migrate", "--verbosity=0", env=env)
    machines = [hosts(), hosts()]
    workers = [machine.start(RECIPES, env, cloud.log_dir) for machine in machines]
    for worker in workers:
        worker.wait_ready()
    bus = connect(broker_url, sender="hosts")
    started = time.monotonic()
    sender, futures = stream_asks(bus, [{"name": f"h-{n}"} for n in range(sent)])
    deadline = started + 60
    while sum(f.done() for f in list(futures)) < sent // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    answered_before_cut = sum(f.done() for f in list(futures))
    handled_before_cut = [logged([w], HANDLED) for w in workers]
    cut_at = time.monotonic()
    machines[0].cut()
    sender.join(max(1, deadline - time.monotonic()))
    answered, unanswered = wait(futures, timeout=max(1, deadline - time.monotonic()))
    elapsed = time.monotonic() - started
    cut_worker_running = workers[0].process.poll() is None
    workers[1].stop()
    rows, distinct = recipe_rows(env["DATABASE_URL"], "h-")
    figures = {
        "actions sent": sent, "replies": len(answered), "lost": sent - len(answered), "rows": rows,
        "duplicate rows": rows - distinct, "answered before the cut": answered_before_cut,
        "handled per host before the cut": handled_before_cut,
        "handled per host": [logged([w], HANDLED) for w in workers],
        "answered again from the record": logged(workers, "already handled"),
        "redelivered to the other host": logged(workers[1:], "redelivered action"),
        "cut host's worker still running": cut_worker_running,
        "seconds": round(elapsed, 1), "seconds after the cut": round(time.monotonic() - cut_at, 1),
    }
    bus.close()
    print("\ntwo hosts, one cut off mid-stream:", json.dumps(figures))
    assert not unanswered, figures
    replies = [future.result() for future in futures]
    assert all(r.action_type == "create.recipe.success" for r in replies), figures
    assert sorted(r.payload["name"] for r in replies) == sorted(f"h-{n}" for n in range(sent))
    assert len({r.payload["id"] for r in replies}) == sent  # each ask answered by its own row
    assert (rows, distinct) == (sent, sent), figures
    assert all(handled_before_cut), figures  # both hosts took part before the cut
    assert cut_worker_running, figures  # cut off, not dead: the broker gave its actions to the other host
    assert figures["redelivered to the other host"] > 0, figures  # the cut host held some when cut


def test_a_workers_database_session_is_probed_so_a_cut_off_worker_frees_its_locks_within_a_minute(db):
    """PostgreSQL notices a worker cut off in the middle of a transaction by its keepalives (30 s, then
    3 probes 10 s apart): its locks on the records' unique keys do not block another replica for hours."""
    from django.db import connection

    with connection.cursor() as cursor:
        shown = {}
        for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"):
            cursor.execute(f"SHOW {name}")
            shown[name] = cursor.fetchone()[0]
    assert shown == {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}
