"""GraphiQL at the gateway runs a subscription, in a real (headless) Chromium: the proof of issue 17's
"GraphiQL at the gateway can run a subscription". Not a pytest test (CI machines have no browser); run it
by hand after changing the gateway's GraphiQL (gateway/views.py, templates/gateway/graphiql.html,
static/gateway/graphiql.js).

Needs Chromium and Python's playwright (its own browsers are not used: no ``playwright install``)::

    apt-get install -y chromium
    .venv/bin/pip install playwright
    .venv/bin/python tests/browser/graphiql_subscription.py            # starts a recipe book cloud of its own
    .venv/bin/python tests/browser/graphiql_subscription.py --gateway http://127.0.0.1:8000   # or: ./dev up's

Without ``--gateway`` it runs ``manage.py cloud up examples/recipe_book --port 0`` in a temporary folder
(embedded bus, SQLite, NAUTILUS_DEMO=1) and stops it by its PID at the end.

What it does, as a user would: opens GraphiQL at ``/graphql``, types ``subscription { recipeCreated { id name
} }`` into the query editor and runs it; a recipe created through the gateway (a mutation over HTTP) must
show in the result pane. Then it types a user's ``Authorization: Bearer <token>`` into the headers pane and
runs the subscription again: that user's *private* recipe (which an anonymous subscriber may not read) must
show, and the socket's ``connection_init`` must carry the header. Last, a bad token in the pane must show the
gateway's refusal (4403) at once. A screenshot of the first two is written (``--screenshots``, default /tmp).
Exits 0 when all of it showed, 1 when not (saying what it saw).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SUBSCRIPTION = "subscription { recipeCreated { id name } }"
REGISTER = "mutation($e: String!, $p: String!) { registerUser(email: $e, password: $p) { sessionToken } }"
CREATE_RECIPE = "mutation($name: String!, $private: Boolean) { createRecipe(name: $name, private: $private) " \
                "{ recipe { id name } } }"
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"


class Failed(Exception):
    pass


def graphql(gateway, query, variables=None, token=None):
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{gateway}/graphql", json.dumps({"query": query, "variables": variables or {}})
                                     .encode(), headers)
    with urllib.request.urlopen(request, timeout=15) as response:
        body = json.load(response)
    if body.get("errors"):
        raise Failed(f"the gateway answered {query.split('(')[0]} with errors: {body['errors']}")
    return body["data"]


class Cloud:
    """``manage.py cloud up examples/recipe_book`` in a temporary folder, stopped by its PID."""

    def __init__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="graphiql-cloud-")
        self.log_path = Path(self.folder.name) / "cloud.log"
        self.process = None

    def start(self, timeout=180):
        env = {k: v for k, v in os.environ.items() if k not in ("NAUTILUS_BROKER_URL", "DATABASE_URL",
                                                                 "NAUTILUS_SECRET_KEY", "DJANGO_SETTINGS_MODULE")}
        env.update(NAUTILUS_DEMO="1", NAUTILUS_VAR_DIR=self.folder.name, PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "cloud", "up", "examples/recipe_book", "--port", "0"],
            cwd=PROJECT_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        state = Path(self.folder.name) / "cloud.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Failed(f"cloud up exited ({self.process.returncode}):\n{self.log_path.read_text()}")
            if state.exists():
                return json.loads(state.read_text())["gateway"]
            time.sleep(0.5)
        raise Failed(f"the cloud was not up after {timeout}s:\n{self.log_path.read_text()}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # cloud up stops its services (by their PIDs), then exits
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the cloud's processes only
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()
        self.folder.cleanup()


def editor_value(page, selector):
    return page.evaluate("s => document.querySelector(s).CodeMirror.getValue()", selector)


def type_into(page, selector, text):
    """Click into a CodeMirror editor, empty it and type ``text`` key by key (brackets close as typed)."""
    page.click(selector)
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type(text, delay=20)
    page.keyboard.press("Escape")  # closes an autocompletion popup, if one is open
    value = editor_value(page, selector)
    if value.strip() != text:
        raise Failed(f"the editor holds {value!r}, not {text!r}")


def wait_for_event(page, gateway, name, token, private, timeout=30):
    """Create recipes named ``name`` (again every few seconds: the subscription may still be setting up)
    until the result pane shows one; return the pane's text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        created = graphql(gateway, CREATE_RECIPE, {"name": name, "private": private}, token)["createRecipe"]["recipe"]
        print(f"created {created} over HTTP")
        until = min(deadline, time.monotonic() + 5)
        while time.monotonic() < until:
            shown = editor_value(page, RESPONSE)
            if name in shown:
                return shown
            if '"errors"' in shown:
                raise Failed(f"GraphiQL's result pane shows errors: {shown}")
            time.sleep(0.2)
    raise Failed(f"no event for {name!r} in GraphiQL's result pane after {timeout}s; "
                 f"it shows: {editor_value(page, RESPONSE)!r}")


def run(gateway, chromium, screenshots):
    from playwright.sync_api import sync_playwright

    token = graphql(gateway, REGISTER, {"e": f"graphiql-{uuid.uuid4().hex[:8]}@example.com",
                                        "p": "correct horse battery"})["registerUser"]["sessionToken"]
    frames = []  # (url, text) of every frame GraphiQL sends over its sockets
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.on("pageerror", lambda error: print(f"page error: {error}"))
            page.on("websocket", lambda ws: (print(f"GraphiQL opened {ws.url}"),
                                             ws.on("framesent", lambda text, url=ws.url: frames.append((url, text)))))
            page.goto(f"{gateway}/graphql")  # Chromium asks for text/html: the GraphiQL page
            page.wait_for_selector(QUERY_EDITOR, timeout=30000)
            page.wait_for_selector(".graphiql-execute-button", timeout=30000)

            # 1. anonymous: a public recipe's create shows
            type_into(page, QUERY_EDITOR, SUBSCRIPTION)
            page.click(".graphiql-execute-button")
            shown = wait_for_event(page, gateway, "Pancakes seen in GraphiQL", token, private=False)
            print(f"GraphiQL's result pane (anonymous):\n{shown}")
            page.screenshot(path=str(screenshots / "graphiql_subscription_anonymous.png"))
            page.click(".graphiql-execute-button")  # stops the subscription (the button is its stop button)

            # 2. as the user of the headers pane: the user's private recipe shows
            page.get_by_role("button", name="Headers").click()
            headers_editor = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
            page.wait_for_selector(headers_editor, timeout=10000)
            type_into(page, headers_editor, json.dumps({"Authorization": f"Bearer {token}"}))
            page.click(".graphiql-execute-button")
            shown = wait_for_event(page, gateway, "A private soup seen in GraphiQL", token, private=True)
            print(f"GraphiQL's result pane (with the headers pane's token):\n{shown}")
            page.screenshot(path=str(screenshots / "graphiql_subscription_token.png"))
            page.click(".graphiql-execute-button")

            # 3. a bad token: refused (4403), and GraphiQL says so at once (no retries with the same token)
            type_into(page, headers_editor, json.dumps({"Authorization": "Bearer not-a-token"}))
            page.click(".graphiql-execute-button")
            deadline = time.monotonic() + 10
            while "4403" not in editor_value(page, RESPONSE) and time.monotonic() < deadline:
                time.sleep(0.2)
            if "4403" not in editor_value(page, RESPONSE):
                raise Failed(f"a bad token's refusal is not shown: {editor_value(page, RESPONSE)!r}")
            print(f"with a bad token: {json.loads(editor_value(page, RESPONSE))['errors'][0]['message']}")
        finally:
            browser.close()
    inits = [json.loads(text) for url, text in frames if '"connection_init"' in text]
    if not all(url.endswith("/graphql") and url.startswith("ws") for url, _ in frames):
        raise Failed(f"GraphiQL sent frames elsewhere than the gateway's ws://…/graphql: {frames}")
    if not any((init.get("payload") or {}).get("Authorization") == f"Bearer {token}" for init in inits):
        raise Failed(f"no connection_init carried the headers pane's Authorization: {inits}")
    print(f"connection_init payloads: {[init.get('payload', {}) for init in inits]}"
          .replace(token, token[:12] + "…"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", help="a running gateway's URL (default: start a recipe book cloud)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium to drive")
    parser.add_argument("--screenshots", default=tempfile.gettempdir(), type=Path, help="where screenshots go")
    args = parser.parse_args()
    cloud = None
    try:
        gateway = args.gateway
        if not gateway:
            cloud = Cloud()
            gateway = cloud.start()
            print(f"cloud up; gateway at {gateway}")
        run(gateway.rstrip("/"), args.chromium, args.screenshots)
    except Failed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        if cloud:
            cloud.stop()
    print(f"OK: GraphiQL ran the subscription; screenshots in {args.screenshots}/graphiql_subscription_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
