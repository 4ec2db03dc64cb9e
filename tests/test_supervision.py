"""runservice supervises its worker, and /health tells the truth about it (RabbitMQ + PostgreSQL).

- kill -9 of the worker: runservice restarts it (one line each time) and it answers again;
  meanwhile ``/health`` answers 503 naming the worker, ``/health/live`` 200.
- A worker that keeps dying: runservice gives up and exits non-zero.
- The broker going away: ``/health`` answers 503 naming the broker, then 200 again.
"""
import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request

from nautilus_core.cloud import health_of
from nautilus_core.testing import BrokerProxy

from .conftest import RECIPES
from .test_deadlines import eventually


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def worker_pids(service):
    """The worker PIDs runservice has started so far, oldest first."""
    return [int(pid) for pid in re.findall(r"worker pid (\d+)|worker restarted \(pid (\d+)", service.log())
            for pid in pid if pid]


def test_a_killed_worker_is_restarted_and_health_says_so_meanwhile(cloud, bus):
    service = cloud.start(RECIPES, http=True)
    assert get(f"{service.url}/health") == (200, {**get(f"{service.url}/health")[1], "status": "ok"})
    first = worker_pids(service)[0]
    seen, stop = [], threading.Event()

    def poll():  # what a load balancer's readiness probe, and `cloud status`, see
        while not stop.is_set():
            status, body = get(f"{service.url}/health")
            seen.append((time.monotonic(), status, body.get("worker"), get(f"{service.url}/health/live")[0],
                         health_of(service.url)))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        killed = time.monotonic()
        os.kill(first, signal.SIGKILL)
        eventually(lambda: len(worker_pids(service)) == 2, timeout=30)
        restarted = time.monotonic() + 1.0  # /health keeps its answer for a second
        eventually(lambda: any(at > restarted and status == 200 for at, status, *_ in seen), timeout=60)
    finally:
        stop.set()
        poller.join(10)
    reply = bus.ask("create.recipe.pending", {"name": "after the restart"}, timeout=20)
    assert reply.action_type == "create.recipe.success"
    down = [(status, worker, live, why) for at, status, worker, live, why in seen if at > killed and status != 200]
    back = min(at for at, status, *_ in seen if at > restarted and status == 200)
    workers = sorted({w for _, w, _, _ in down})
    print("\nkill -9 under runservice:", json.dumps({"503s seen": len(down), "workers": workers,
                                                     "seconds until ready again": round(back - killed, 1)}))
    assert down, "no 503 while the worker was down"
    assert all(status == 503 and worker in ("restarting", "exited", "not consuming") for status, worker, _, _ in down)
    assert all(live == 200 for _, _, live, _ in down)  # alive: not a reason to kill the container
    # cloud status's reading of /health (a request of its own: the worker may be back by then)
    assert any(ready is False for _, _, _, (ready, _) in down)
    assert all(why.startswith("worker ") for _, _, _, (ready, why) in down if not ready)
    assert "exited with code -9; restarting it in" in service.log()
    assert service.process.poll() is None
    service.stop()


def test_runservice_gives_up_on_a_worker_that_keeps_dying(cloud):
    service = cloud.start(RECIPES, http=True)
    started = time.monotonic()
    for deaths in range(1, 6):
        pids = eventually(lambda: worker_pids(service) if len(worker_pids(service)) == deaths else None, timeout=30)
        os.kill(pids[-1], signal.SIGKILL)
    code = service.process.wait(60)
    assert code == 1, service.log()[-2000:]
    assert "died 5 times in 60s: giving up" in service.log()
    print(f"\nrunservice gave up after {time.monotonic() - started:.1f}s")


def test_health_names_the_broker_when_it_is_away(cloud, broker_url):
    proxy = BrokerProxy()
    try:
        env = {**cloud.env(RECIPES), "NAUTILUS_BROKER_URL": proxy.url(broker_url)}
        service = cloud.start(RECIPES, http=True, env=env)
        proxy.cut()
        status, body = eventually(lambda: (answer := get(f"{service.url}/health"))[0] == 503 and answer, timeout=20)
        assert body["status"] == "unavailable" and body["broker"].startswith("unreachable"), body
        assert body["database"] == "ok"
        proxy.restore()
        eventually(lambda: get(f"{service.url}/health")[0] == 200, timeout=60, every=0.2)
        service.stop()
    finally:
        proxy.close()
