"""``manage.py cloud up``: the whole example cloud, on the embedded default and on RabbitMQ or Redis + PostgreSQL.

Each test starts the cloud as a child process, queries it through the gateway, stops it
with SIGTERM, and checks that no process it started (children, their workers) is left.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from nautilus_core.cloud import get_json
from nautilus_core.internal import HEADER, derive_internal_token

from .conftest import DATABASE_URL, PROJECT_DIR, bearer, graphql, register

CREATE_RECIPE = 'mutation { createRecipe(name: "Pancakes", servings: 4) { recipe { id name } } }'
CREATE_INGREDIENT = 'mutation { createIngredient(name: "flour") { ingredient { id name } } }'
CONNECT = "mutation($r: ID!, $i: ID!) { createIngredients(recipe: $r, ingredient: $i) { ingredients { id } } }"
NESTED = "{ recipe { name ingredients { name } } ingredient { name recipes { name } } }"
GATEWAY_URL = re.compile(r"up\. GraphQL .*?(http://127\.0\.0\.1:\d+)/graphql")


def descendants(pid):
    """Every live process under ``pid`` (children, grandchildren…), from /proc."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class RunningCloud:
    """``manage.py cloud up`` in a child process; its output is collected line by line."""

    def __init__(self, env, path="examples/recipe_book", options=()):
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "cloud", "up", path, "--port", "0", "--no-color", *options],
            cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.pids = set()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def output(self):
        return "\n".join(self.lines)

    def wait_up(self, timeout=150):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = GATEWAY_URL.search(self.output())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"the cloud did not come up:\n{self.output()[-6000:]}")

    def stop(self):
        self.pids |= descendants(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def ok(url, query, variables=None, headers=None):
    status, body = graphql(url, query, variables, headers=headers)
    assert status == 200 and "errors" not in body, body
    return body["data"]


def exercise(url):
    """A user, mutations, a connection and a nested query in both directions, through the gateway."""
    session = bearer(register(url, "cook@example.com"))
    recipe = ok(url, CREATE_RECIPE, headers=session)["createRecipe"]["recipe"]
    assert recipe["name"] == "Pancakes"
    flour = ok(url, CREATE_INGREDIENT)["createIngredient"]["ingredient"]
    ok(url, CONNECT, {"r": recipe["id"], "i": flour["id"]}, headers=session)
    assert ok(url, NESTED) == {"recipe": [{"name": "Pancakes", "ingredients": [{"name": "flour"}]}],
                               "ingredient": [{"name": "flour", "recipes": [{"name": "Pancakes"}]}]}


def run_cloud(env, options=()):
    cloud = RunningCloud(env, options=options)
    try:
        url = cloud.wait_up()
        cloud.pids |= descendants(cloud.process.pid)
        assert len(cloud.pids) >= 10, cloud.pids  # five services, each HTTP + a worker
        index = get_json(f"{url}/?format=json")
        assert {s["name"] for s in index["services"]} >= {"recipe", "ingredient", "ingredients"}
        assert not any(s["url"] or s["graphql"] or s["admin"] for s in index["services"])  # internal addresses
        # the cloud's inside (its key, the demo's kept under var/) sees them
        key = env.get("NAUTILUS_SECRET_KEY") or (Path(env["NAUTILUS_VAR_DIR"]) / "secret_key").read_text().strip()
        index = get_json(f"{url}/?format=json", headers={HEADER: derive_internal_token(key)})
        assert all(s["url"] and s["admin"].endswith("/admin/") for s in index["services"])
        exercise(url)
        status = subprocess.run([sys.executable, "manage.py", "cloud", "status", "--gateway", url], cwd=PROJECT_DIR,
                                env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"^recipe\s+\w{12}\s+up\s+yes\s+http://", status.stdout, re.M), status.stdout
        kill_a_worker_and_see_it_restarted(cloud, url, env)
    finally:
        code = cloud.stop()
    assert code == 0, cloud.output()[-4000:]
    assert "stopped 5 services" in cloud.output()
    left = [pid for pid in cloud.pids if alive(pid)]
    assert not left, f"processes left behind: {left}"
    return cloud


def kill_a_worker_and_see_it_restarted(cloud, url, env):
    """A hung recipe worker (SIGSTOP): `cloud status` says its worker does not consume; then kill -9 of it:
    its runservice restarts it. (A kill alone is restarted too fast to be seen by a status that takes
    seconds to start, on a quiet machine.)"""
    def cmdline(pid):
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    worker = next(pid for pid in descendants(cloud.process.pid)
                  if b"celery" in cmdline(pid) and b"--hostname=recipe." in cmdline(pid))
    os.kill(worker, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while True:
        status = subprocess.run([sys.executable, "manage.py", "cloud", "status", "--gateway", url], cwd=PROJECT_DIR,
                                env=env, capture_output=True, text=True, timeout=60)
        if re.search(r"^recipe\s+\w{12}\s+up\s+no\s+http://\S+\s+\(worker ", status.stdout, re.M):
            break
        assert time.monotonic() < deadline, status.stdout
    assert status.returncode == 1 and "some services do not answer" in status.stderr
    os.kill(worker, signal.SIGKILL)
    while "recipe: worker restarted" not in cloud.output() or get_json(f"{url}/?format=json") is None:
        assert time.monotonic() < deadline + 30, cloud.output()[-3000:]
        time.sleep(0.2)
    assert re.search(r"recipes\s+\| recipe: the worker \(pid \d+\) exited with code -9; restarting it in",
                     cloud.output()), cloud.output()[-3000:]


def base_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NAUTILUS_BROKER_URL", "DATABASE_URL", "NAUTILUS_SECRET_KEY", "DJANGO_SETTINGS_MODULE")}
    return {**env, "NAUTILUS_VAR_DIR": str(tmp_path), "NAUTILUS_DEMO": "1", **extra}


def test_the_example_cloud_on_the_embedded_default(tmp_path):
    cloud = run_cloud(base_env(tmp_path))
    assert "bus embedded" in cloud.output()
    assert (tmp_path / "recipes.sqlite3").exists() and (tmp_path / "gateway.sqlite3").exists()
    assert not (tmp_path / "cloud.json").exists()


@pytest.mark.brokers("rabbitmq", "redis")
def test_the_example_cloud_on_a_broker_and_postgresql(tmp_path, broker_url):
    import psycopg

    prefix = f"nautilus_cloud_{uuid.uuid4().hex[:8]}"
    server = DATABASE_URL.rsplit("/", 1)[0]
    env = base_env(tmp_path, NAUTILUS_BROKER_URL=broker_url, DATABASE_URL=f"{server}/{prefix}_{{service}}",
                   NAUTILUS_SECRET_KEY="tests-only")
    try:
        cloud = run_cloud(env, options=["--gateway-processes", "2"])  # stopped with its HTTP processes too
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            names = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                    [f"{prefix}_%"])]
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert f"{prefix}_recipes" in names and f"{prefix}_gateway" in names
    assert "created the PostgreSQL database" in cloud.output()
    assert re.search(r"gateway.*api: 2 HTTP processes \(pids \d+, \d+\)", cloud.output()), cloud.output()[-4000:]
    assert not list(tmp_path.glob("*.sqlite3"))


def test_a_crashed_service_is_reported(tmp_path):
    """A service that cannot start is named, with its exit code and its last lines; nothing is left running."""
    cloud_dir = tmp_path / "broken"
    (cloud_dir / "svc").mkdir(parents=True)
    (cloud_dir / "svc" / "__init__.py").write_text("")
    (cloud_dir / "svc" / "settings.py").write_text(
        "from nautilus_core.settings import *  # noqa\n"
        "from nautilus_core.settings import database, service_apps\n"
        "INSTALLED_APPS = service_apps()\nDATABASES = database('svc')\n"
        "NAUTILUS = {'SERVICE': 'svc.services.Broken'}\n")
    (cloud_dir / "svc" / "services.py").write_text(
        "import nautilus\n\n\nclass Broken(nautilus.Service):\n"
        "    def run(self, **options):\n        raise SystemExit('the svc service breaks on start')\n")
    cloud = RunningCloud(base_env(tmp_path / "var"), path=str(cloud_dir))
    code = cloud.process.wait(120)
    assert code != 0
    assert re.search(r"svc \(pid \d+\) exited with code \d+; its last lines:", cloud.output()), cloud.output()
    assert "the svc service breaks on start" in cloud.output()
