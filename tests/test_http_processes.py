"""A gateway served by several HTTP processes (``runservice --http-processes 2``, issue 16 item 3): real services
on RabbitMQ and PostgreSQL. Each process answers (``/health/live`` names its pid; a keep-alive connection, or a
WebSocket, stays with the process it reached, found here through /proc), learns the cloud, invalidates its own
read cache, feeds its own subscriptions and counts in one ``/metrics``; a dead one is replaced; SIGTERM stops all.

The recipe service here publishes each outcome 0.4 s after it answered (``tests/slow_outcomes``): a process that
did not make a mutation hears of it from the bus that much later, so only the processes telling each other
(``gateway/siblings.py``) keep the old row from a read that follows the mutation.
"""
import http.client
import json
import os
import re
import signal
import socket
import time

import pytest
from kombu import Queue
from websockets.sync.client import connect as ws_connect

from nautilus_core.brokers import connection as broker_connection
from nautilus_core.http_processes import HTTPProcesses, listening_socket
from nautilus_core.testing import ServiceProcess, free_port, manage

from .conftest import GATEWAY, INGREDIENTS, SECRET_KEY, USERS, bearer, register

SLOW_RECIPES = "tests.slow_outcomes.settings"
PROCESSES = 2

RECIPE = "query($name: String) { recipe(name: $name) { id name servings } }"
CREATE_RECIPE = "mutation($name: String!) { createRecipe(name: $name) { recipe { id } } }"
UPDATE_RECIPE = "mutation($id: ID!, $servings: Int) { updateRecipe(id: $id, servings: $servings) { recipe { id } } }"


# -- reaching one process ----------------------------------------------------------------------------

def _get(connection, path, method="GET"):
    connection.request(method, path)
    response = connection.getresponse()
    return response.status, response.read()


def reach(port, pid=None, tries=300):
    """``(a keep-alive connection, the pid of the process it reached)``: the process ``pid`` if given."""
    for _ in range(tries):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, body = _get(connection, "/health/live")
        assert status == 200, body
        reached = json.loads(body)["pid"]
        if pid is None or reached == pid:
            return connection, reached
        connection.close()
    raise AssertionError(f"no connection reached the process {pid} in {tries} tries")


def pids_of(port, count=PROCESSES, timeout=60):
    """The pids of ``count`` distinct HTTP processes that answer on ``port``."""
    seen, deadline = set(), time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {seen} answered within {timeout}s"
        connection, pid = reach(port)
        connection.close()
        seen.add(pid)
    return sorted(seen)


class At:
    """Requests to one HTTP process: a keep-alive connection that reached it (reached again after 3 s idle,
    before uvicorn closes it at 5)."""

    def __init__(self, port, pid):
        self.port, self.pid = port, pid
        self.connection, self.used = None, 0.0

    def _connection(self):
        if self.connection is None or time.monotonic() - self.used > 3:
            if self.connection is not None:
                self.connection.close()
            self.connection = reach(self.port, self.pid)[0]
        self.used = time.monotonic()
        return self.connection

    def get(self, path, method="GET"):
        return _get(self._connection(), path, method)

    def graphql(self, query, variables=None, headers=None):
        connection = self._connection()
        connection.request("POST", "/graphql", json.dumps({"query": query, "variables": variables}),
                           {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    def ok(self, query, variables=None, headers=None):
        status, body = self.graphql(query, variables, headers)
        assert status == 200 and "errors" not in body, (self.pid, body)
        return body["data"]

    def metrics(self):
        status, body = self.get("/metrics")
        assert status == 200
        samples = {}
        for line in body.decode().splitlines():
            match = re.match(r'^(\w+)(?:\{(.*)\})? (\S+)$', line)
            if match:
                samples[(match.group(1), frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")))] = \
                    float(match.group(3))
        return samples

    def close(self):
        if self.connection is not None:
            self.connection.close()


def count(samples, name, **labels):
    return sum(value for (metric, found), value in samples.items()
               if metric == name and set(labels.items()) <= set(found))


def server_pid(client_socket, port, pids):
    """Which of ``pids`` holds the server end of a TCP connection to ``port`` (from /proc, as ``ss -p`` finds it)."""
    client_port = client_socket.getsockname()[1]
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                if local == port and remote == client_port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    return None


def descendants(pid):
    """The pids of the processes below ``pid`` (its children, theirs…)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_ours(pids, env):
    """SIGTERM those of ``pids`` still running with this environment's database (never a reused pid's stranger)."""
    marker = f"DATABASE_URL={env['DATABASE_URL']}".encode()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                ours = marker in environ.read().split(b"\0")
        except OSError:
            continue
        if ours and alive(pid):
            os.kill(pid, signal.SIGTERM)


# -- the cloud -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(cloud):
    """Slow-outcome recipes, users, and the gateway under ``runservice --http-processes 2``."""
    for settings in (SLOW_RECIPES, USERS):
        cloud.start(settings)
    with broker_connection(cloud.broker_url) as connection:  # announcements earlier modules left for a gateway
        try:
            Queue("nautilus.api", no_declare=True)(connection.channel()).purge()
        except connection.channel_errors:
            pass
    env = {**cloud.env(GATEWAY), "NAUTILUS_ACCESS_TOKEN_LIFETIME": "120"}
    manage(GATEWAY, "migrate", "--verbosity=0", env=env)
    process = ServiceProcess(GATEWAY, env, log_dir=cloud.log_dir, http_port=free_port(), http_processes=PROCESSES)
    cloud.processes.append(process.start())
    process.wait_ready()
    deadline = time.monotonic() + 30
    for pid in pids_of(process.http_port):  # each learned the cloud
        at = At(process.http_port, pid)
        while set(at.ok("{ _services }")["_services"]) < {"recipe", "user"}:
            assert time.monotonic() < deadline, f"the process {pid} did not learn the cloud"
            time.sleep(0.2)
        at.close()
    return process


@pytest.fixture
def each(gateway):
    """``[At(process) …]``, one per HTTP process."""
    ats = [At(gateway.http_port, pid) for pid in pids_of(gateway.http_port)]
    yield ats
    for at in ats:
        at.close()


@pytest.fixture(scope="module")
def session(gateway):
    return bearer(register(gateway.url, "ann@processes.example"))


# -- the tests ---------------------------------------------------------------------------------------

def test_http_processes_are_refused_below_one(cloud):
    done = manage(GATEWAY, "runservice", "--http-processes=0", check=False,
                  env={"NAUTILUS_SECRET_KEY": SECRET_KEY, "NAUTILUS_BROKER_URL": cloud.broker_url})
    assert done.returncode != 0 and "--http-processes (NAUTILUS_HTTP_PROCESSES) must be 1 or more" in done.stderr


def test_the_listening_socket_is_tcp_so_responses_are_not_held_back():
    """uvicorn's own socket has ``proto`` 0: asyncio would leave Nagle's algorithm on (Kludex/uvicorn#3149)."""
    import uvicorn

    sock = listening_socket(uvicorn.Config("nautilus_core.asgi:application", host="127.0.0.1", port=0, workers=2))
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.get_inheritable()
    finally:
        sock.close()


def test_each_process_answers_says_which_and_counts_in_one_metrics_page(gateway, each):
    pids = [at.pid for at in each]
    assert len(set(pids)) == PROCESSES and gateway.pid not in pids
    assert all(pid in descendants(gateway.pid) for pid in pids)  # runservice's children, not strangers
    for at in each:
        status, body = at.get("/health")
        assert status == 200, body
        health = json.loads(body)
        # the worker is its parent's: each child's readiness sees it consume
        assert (health["pid"], health["status"], health["worker"]) == (at.pid, "ok", "consuming")
    before = [at.metrics() for at in each]
    for at in each:
        for _ in range(5):
            assert at.get("/health/live", method="HEAD")[0] == 200
    for at in each:  # a kept-alive connection is not held back by Nagle's algorithm (a delayed ACK: 40 ms each)
        timings = []
        for _ in range(21):
            started = time.perf_counter()
            at.get("/health/live")
            timings.append(time.perf_counter() - started)
        assert sorted(timings)[10] < 0.035, (at.pid, timings)
    for at, old in zip(each, before):  # either process's page counts the requests of both
        assert count(at.metrics(), "nautilus_http_requests_total", service="api", method="HEAD", status="200") \
            - count(old, "nautilus_http_requests_total", service="api", method="HEAD", status="200") \
            == 5 * PROCESSES


def test_a_mutation_through_one_process_never_leaves_the_old_row_in_the_other(gateway, each, session):
    first, second = each
    recipe = first.ok(CREATE_RECIPE, {"name": "shared pie"}, session)["createRecipe"]["recipe"]["id"]
    time.sleep(1)  # its outcome has reached both feeds
    hits_before = count(first.metrics(), "nautilus_gateway_cache_total", service="api", result="hit")
    stale = []
    for servings in range(2, 8):  # a new recipe serves 1
        writer, reader = (first, second) if servings % 2 else (second, first)
        for _ in range(2):  # the reader holds the row as it is now (the second read is a hit)
            assert reader.ok(RECIPE, {"name": "shared pie"}, session)["recipe"][0]["servings"] == servings - 1
        writer.ok(UPDATE_RECIPE, {"id": recipe, "servings": servings}, session)
        read = reader.ok(RECIPE, {"name": "shared pie"}, session)["recipe"][0]["servings"]
        if read != servings:
            stale.append(f"servings={servings} through {writer.pid}, then {read} through {reader.pid}")
        time.sleep(0.5)  # the outcome reaches both feeds
    assert stale == []
    hits = count(first.metrics(), "nautilus_gateway_cache_total", service="api", result="hit") - hits_before
    assert hits >= 6, hits  # the readers' caches did hold the rows a mutation elsewhere replaced


def test_a_new_service_reaches_every_process(cloud, gateway, each):
    for at in each:
        status, body = at.graphql("{ ingredient { name } }")
        assert "Cannot query field 'ingredient'" in json.dumps(body), (at.pid, status, body)
    cloud.start(INGREDIENTS)
    deadline = time.monotonic() + 20
    for at in each:
        while "errors" in at.graphql("{ ingredient { name } }")[1]:
            assert time.monotonic() < deadline, f"the process {at.pid} did not learn of the ingredient service"
            time.sleep(0.2)


def test_each_process_feeds_its_own_subscriptions(gateway, each, session):
    pids, sockets = [at.pid for at in each], {}
    for _ in range(60):  # a WebSocket to each process
        ws = ws_connect(gateway.url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"],
                        open_timeout=5)
        pid = server_pid(ws.socket, gateway.http_port, pids)
        if pid is None or pid in sockets:
            ws.close()
            continue
        sockets[pid] = ws
        if len(sockets) == len(pids):
            break
    try:
        assert set(sockets) == set(pids), f"WebSockets reached {set(sockets)} of {pids}"
        for ws in sockets.values():
            ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(ws.recv(timeout=5)) == {"type": "connection_ack"}
            ws.send(json.dumps({"id": "1", "type": "subscribe",
                                "payload": {"query": "subscription { recipeCreated { name } }"}}))
        time.sleep(1)  # both subscriptions follow the bus
        each[0].ok(CREATE_RECIPE, {"name": "seen everywhere"}, session)
        for pid, ws in sockets.items():
            message = json.loads(ws.recv(timeout=10))
            assert message == {"id": "1", "type": "next", "payload": {"data": {"recipeCreated": {
                "name": "seen everywhere"}}}}, (pid, message)
    finally:
        for ws in sockets.values():
            ws.close()


def test_a_dead_process_is_replaced_and_learns_the_cloud(gateway, each):
    dead = each[1].pid
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not (found := re.search(rf"the HTTP process \(pid {dead}\) exited with code -9; started another "
                                  rf"\(pid (\d+)\)", gateway.log())):
        assert time.monotonic() < deadline, gateway.log()[-3000:]
        time.sleep(0.2)
    new = int(found.group(1))
    assert new in pids_of(gateway.http_port) and dead not in pids_of(gateway.http_port)
    at = At(gateway.http_port, new)
    assert {"recipe", "user", "ingredient"} <= set(at.ok("{ _services }")["_services"])
    assert [row["servings"] for row in at.ok(RECIPE, {"name": "shared pie"})["recipe"]] == [7]
    at.close()


def test_http_processes_that_keep_dying_stop_runservice(cloud, gateway):
    """Five deaths within a minute: runservice gives up (exit code 1), as with a worker that keeps dying, and
    leaves no process behind. (Another replica of the gateway.)"""
    replica = ServiceProcess(GATEWAY, gateway.env, log_dir=cloud.log_dir, http_port=free_port(),
                             http_processes=PROCESSES, name="gateway-crashing").start()
    seen = set()
    try:
        replica.wait_ready()
        victim = int(re.search(r"api: 2 HTTP processes \(pids (\d+), \d+\)", replica.log()).group(1))
        for death in range(1, HTTPProcesses.GIVE_UP_AFTER + 1):
            seen |= descendants(replica.pid)
            os.kill(victim, signal.SIGKILL)
            if death == HTTPProcesses.GIVE_UP_AFTER:
                break
            deadline = time.monotonic() + 30
            while not (found := re.search(rf"\(pid {victim}\) exited with code -9; started another \(pid (\d+)\)",
                                          replica.log())):
                assert time.monotonic() < deadline, replica.log()[-3000:]
                time.sleep(0.1)
            victim = int(found.group(1))
        assert replica.process.wait(40) == 1, replica.log()[-3000:]
        assert "HTTP processes died 5 times in 60s: giving up" in replica.log()
        deadline = time.monotonic() + 10
        while [pid for pid in seen if alive(pid)]:
            assert time.monotonic() < deadline, f"left behind: {[pid for pid in seen if alive(pid)]}"
            time.sleep(0.1)
    finally:
        replica.kill()
        stop_ours(seen, gateway.env)


def test_the_http_processes_of_a_killed_runservice_stop_too(cloud, gateway):
    """``kill -9`` gives runservice no chance to stop its children: they notice, and stop rather than serve on.
    (A second replica of the gateway: its own runservice, the same database and broker.)"""
    replica = ServiceProcess(GATEWAY, gateway.env, log_dir=cloud.log_dir, http_port=free_port(),
                             http_processes=PROCESSES, name="gateway-replica").start()
    below = set()
    try:
        replica.wait_ready()
        http_pids = pids_of(replica.http_port)  # both serve: their watch has started
        below = descendants(replica.pid)
        replica.kill()
        deadline = time.monotonic() + 10
        while [pid for pid in http_pids if alive(pid)]:
            assert time.monotonic() < deadline, f"still serving without their runservice: {http_pids}"
            time.sleep(0.1)
    finally:
        replica.kill()
        stop_ours(below, gateway.env)  # its worker, orphaned as a killed runservice leaves it


def test_sigterm_stops_every_process(gateway, each):
    below = descendants(gateway.pid)
    assert {at.pid for at in each} < below and len(below) >= PROCESSES + 1  # the HTTP processes and the worker
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0, gateway.log()[-3000:]
    deadline = time.monotonic() + 10
    while [pid for pid in below if alive(pid)]:
        assert time.monotonic() < deadline, f"still running after runservice stopped: {[p for p in below if alive(p)]}"
        time.sleep(0.1)
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", gateway.http_port, timeout=2).request("GET", "/health/live")
