"""`manage.py runservice` (HTTP + worker in one command), the HTTP endpoints, and the bus CLI."""
import json
import os
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from nautilus_core.testing import ServiceProcess, free_port, manage

from .conftest import INTERNAL, RECIPES

pytestmark = pytest.mark.brokers("rabbitmq", "redis")


def get(url, headers=None, data=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def running(cloud):
    """runservice (HTTP + worker) on a free port, with its own database; stopped by PID (SIGTERM)."""
    env = cloud.env(RECIPES)
    manage(RECIPES, "migrate", "--verbosity=0", env=env)
    service = ServiceProcess(RECIPES, env, log_dir=cloud.log_dir, http_port=free_port()).start().wait_ready()
    worker_pid = int(re.search(r"worker pid (\d+)", service.log()).group(1))
    yield {"base": service.url, "env": env, "process": service.process, "worker_pid": worker_pid}
    service.stop()


def test_graphql_get_and_post(running, bus):
    bus.ask("create.recipe.pending", {"name": "over http"}, timeout=10)  # the runservice worker answers
    query = "{ all_models(name: \"over http\") { name servings } }"
    status, _, body = get(f"{running['base']}/graphql?" + urllib.parse.urlencode({"query": query}),
                          headers={"Accept": "application/json", **INTERNAL})
    assert status == 200 and json.loads(body) == {"data": {"all_models": [{"name": "over http", "servings": 1}]}}

    payload = json.dumps({"query": "query($n: String) { all_models(name: $n) { name } }",
                          "variables": {"n": "over http"}}).encode()
    status, _, body = get(f"{running['base']}/graphql", data=payload,
                          headers={"Content-Type": "application/json", "Accept": "application/json", **INTERNAL})
    assert status == 200 and json.loads(body) == {"data": {"all_models": [{"name": "over http"}]}}

    # GraphQL over HTTP: a document that does not validate is a 400 under the spec's own media type,
    # a 200 (without data) under application/json
    for accept, expected in (("application/graphql-response+json", 400), ("application/json", 200)):
        status, _, body = get(f"{running['base']}/graphql", data=json.dumps({"query": "{ nope }"}).encode(),
                              headers={"Content-Type": "application/json", "Accept": accept, **INTERNAL})
        assert status == expected and "Cannot query field 'nope'" in body and '"data"' not in body


def test_graphiql_assets_are_served_locally(running):
    status, _, page = get(f"{running['base']}/graphql", headers={"Accept": "text/html", **INTERNAL})
    assert status == 200 and "graphiql" in page.lower()
    scripts = re.findall(r'src="([^"]+)"', page)
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()
    for src in scripts:
        status, _, _ = get(running["base"] + src)
        assert status == 200, src


def test_the_services_own_api_is_internal(running, bus):
    """Issue 14: a service's /graphql reads every row; only staff and the cloud's own tools may use it."""
    bus.ask("create.recipe.pending", {"name": "kept inside"}, timeout=10)
    payload = json.dumps({"query": "{ all_models { name } }"}).encode()
    for headers in ({}, {"X-Nautilus-Internal-Token": "guess"}, {"X-Nautilus-Internal-Token": ""},
                    {"Authorization": f"Bearer {INTERNAL['X-Nautilus-Internal-Token']}"}):
        status, _, body = get(f"{running['base']}/graphql", data=payload,
                              headers={"Content-Type": "application/json", **headers})
        assert status == 403 and "kept inside" not in body and "internal" in json.loads(body)["errors"][0]["message"]
    query = urllib.parse.urlencode({"query": "{ all_models { name } }"})
    status, headers, _ = get(f"{running['base']}/graphql?" + query)
    assert status == 403
    # a browser is sent to the admin's login (staff sign in there)
    request = urllib.request.Request(f"{running['base']}/graphql", headers={"Accept": "text/html"})
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request, timeout=10)
    assert redirect.value.code == 302 and redirect.value.headers["Location"].startswith("/admin/login/?next=")
    status, _, body = get(f"{running['base']}/graphql", data=payload,
                          headers={"Content-Type": "application/json", **INTERNAL})
    assert status == 200 and "kept inside" in body


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_admin_and_health(running):
    status, _, page = get(f"{running['base']}/admin/login/")
    assert status == 200 and "Django administration" in page
    status, _, body = get(f"{running['base']}/health")
    assert status == 200
    assert json.loads(body)["status"] == "ok" and json.loads(body)["service"] == "recipe"


def test_admin_registers_the_model(running):
    env = running["env"]
    manage(RECIPES, "shell", "-c", "from django.contrib.auth.models import User; "
           "User.objects.create_superuser('admin', 'a@example.com', 'pw-for-tests')", env=env)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = f"{running['base']}/admin/login/"
    page = opener.open(login).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": "admin", "password": "pw-for-tests",
                                   "csrfmiddlewaretoken": token, "next": "/admin/"}).encode()
    opener.open(urllib.request.Request(login, data=data, headers={"Referer": login}))
    page = opener.open(f"{running['base']}/admin/recipes/recipe/").read().decode()
    assert "Select recipe to change" in page


def test_cli_publish_and_ask(running):
    env = running["env"]
    out = manage(RECIPES, "ask", "create.recipe.pending", '{"name": "from the shell"}', env=env).stdout
    reply = json.loads(out)
    assert reply["action_type"] == "create.recipe.success" and reply["payload"]["name"] == "from the shell"

    published = manage(RECIPES, "publish", "update.recipe.pending",
                       json.dumps({"id": reply["payload"]["id"], "servings": 9}), env=env).stdout
    assert published.startswith("published update.recipe.pending")
    read = {"query": '{ all_models(name: "from the shell") { servings } }'}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = json.loads(manage(RECIPES, "ask", "read.recipe.pending", json.dumps(read), env=env).stdout)
        if out["payload"]["data"]["all_models"] == [{"servings": 9}]:
            break
    assert out["payload"]["data"]["all_models"] == [{"servings": 9}]


def test_cli_errors_exit_non_zero_with_a_clear_message(running):
    env = running["env"]
    nobody = manage(RECIPES, "ask", "create.nobody.pending", "{}", "--timeout", "0.5", env=env, check=False)
    assert nobody.returncode == 1
    assert "no service handles create.nobody.pending" in nobody.stderr  # issue 12: at once, not after 0.5 s

    published = manage(RECIPES, "publish", "create.recipe.pending", '{"name": "too late"}', "--ttl", "0.001",
                       env=env).stdout
    assert ", deadline " in published
    # answered after the late one (one worker, in order): the late one was refused, not applied
    read = json.loads(manage(RECIPES, "ask", "read.recipe.pending",
                             json.dumps({"query": '{ all_models(name: "too late") { pk } }'}), env=env).stdout)
    assert read["payload"]["data"]["all_models"] == []
    bad = manage(RECIPES, "publish", "create.recipe.pending", "{}", "--deadline", "soon", env=env, check=False)
    assert bad.returncode == 1 and "--deadline 'soon' is not an ISO-8601 time" in bad.stderr

    refused = manage(RECIPES, "ask", "create.recipe.pending", '{"servings": 2}', env=env, check=False)
    assert refused.returncode == 1 and "name: This field is required." in refused.stderr

    not_json = manage(RECIPES, "publish", "create.recipe.pending", "{oops", env=env, check=False)
    assert not_json.returncode == 1 and "The payload is not JSON" in not_json.stderr


def test_runservice_stops_its_worker(running):
    process, worker_pid = running["process"], running["worker_pid"]
    assert pid_alive(worker_pid)
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    deadline = time.monotonic() + 20
    while pid_alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(worker_pid)
