"""``/metrics`` of several processes of one service (issue 18): two uvicorn processes and a prefork worker.

A module of its own: the recipe service that ``test_metrics.py`` keeps running would compete for
the queue, and the actions it took would be counted in its own folder, not in this one.
"""
import re
import subprocess
import sys
import time
import urllib.request

from nautilus_core.testing import ServiceProcess, free_port, manage

from .conftest import RECIPES
from .test_metrics import N, delta, scrape


def test_several_http_and_worker_processes_add_up(cloud, tmp_path, bus):
    """Two uvicorn processes and a prefork worker of two processes share one multiprocess folder: any
    HTTP process's page counts every action and every request."""
    env = {**cloud.env(RECIPES), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    manage(RECIPES, "migrate", "--verbosity=0", env=env)
    worker = ServiceProcess(RECIPES, env, log_dir=tmp_path, pool="prefork", name="recipe-prefork").start()
    port = free_port()
    log = open(tmp_path / "uvicorn.log", "w")
    http = subprocess.Popen([sys.executable, "-m", "uvicorn", "nautilus_core.asgi:application", "--port", str(port),
                             "--workers", "2", "--lifespan", "off", "--log-level", "warning"],
                            env={**worker.env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health/live", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and http.poll() is None, (tmp_path / "uvicorn.log").read_text()
                time.sleep(0.3)
        before = scrape(url)
        for i in range(N):
            bus.ask("create.recipe.pending", {"name": f"prefork {i}"}, timeout=10)
        for _ in range(N):
            request = urllib.request.Request(f"{url}/health/live", method="HEAD")  # scrapes are GETs
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        # an attempt is counted when its task returns, just after its reply: wait for the last ones
        deadline = time.monotonic() + 10
        while delta(before, scrape(url), "nautilus_actions_handled_total", service="recipe",
                    action_type="create.recipe.pending", outcome="success") < N and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(4):  # whichever HTTP process answers the scrape
            after = scrape(url)
            assert delta(before, after, "nautilus_actions_handled_total", service="recipe",
                         action_type="create.recipe.pending", outcome="success") == N
            assert delta(before, after, "nautilus_http_requests_total", service="recipe", method="HEAD",
                         status="200") == N
        writers = {re.search(r"_(\d+)\.db$", p.name).group(1) for p in (tmp_path / "metrics").glob("*.db")}
        assert len(writers) >= 2, writers  # HTTP and worker processes
    finally:
        http.terminate()
        http.wait(30)
        log.close()
        worker.stop()
