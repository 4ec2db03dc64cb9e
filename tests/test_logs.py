"""Logs a person can read (issue 18): the action and access lines, text and JSON, and a quiet ``cloud up``."""
import io
import json
import logging
import logging.config
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from kombu import Connection, Producer

from nautilus_core import logs
from nautilus_core.bus import actions_exchange
from nautilus_core.testing import ServiceProcess, free_port, manage

from .conftest import PROJECT_DIR, RECIPES
from .test_cloud import GATEWAY_URL, base_env

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
ACTION_LINE = re.compile(r"^\S+ \S+ INFO action recipe create\.recipe\.pending success \d+\.\dms trace=(\S+)$", re.M)
ACCESS_LINE = re.compile(r"^\S+ \S+ INFO http recipe GET /graphql 403 \d+\.\dms$", re.M)
LINE_BUDGET = 30


def logged(log_format, emit):
    """What ``emit()`` logs through a service's LOGGING in ``log_format``."""
    stream = io.StringIO()
    config = logs.logging_config(log_format, loud=False)
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        emit()
    finally:
        logging.config.dictConfig(logs.logging_config())
    return stream.getvalue()


def test_the_action_and_access_lines_in_text():
    text = logged("text", lambda: (
        logs.log_action("recipe", "create.recipe.pending", "success", 0.0041, TRACE_ID, action_id="a1"),
        logs.log_action("recipe", "delete.recipe.pending", "retried", 0.2, "-", attempt=2),
        logs.log_request("api", "POST", "/graphql", 200, 0.0123),
        logs.log_request("api", "GET", "/a path\nforged line", 404, 0.001),
        logs.log_request("api", "GET", "/health", 200, 0.001),  # probes: DEBUG
        logs.log_action("api", "init.service.pending", "done", 0.001, "-"),  # heartbeats: DEBUG
        logging.getLogger("kombu.connection").warning("No hostname was supplied. Reverting to default 'localhost'"),
        logging.getLogger("celery.app.trace").info("Task nautilus.action[x] succeeded in 0.01s: None"),
    ))
    lines = text.splitlines()
    assert len(lines) == 4, text
    assert re.fullmatch(rf"\S+ \S+ INFO action recipe create\.recipe\.pending success 4\.1ms trace={TRACE_ID}",
                        lines[0]), lines[0]
    assert lines[1].endswith("INFO action recipe delete.recipe.pending retried 200.0ms trace=- attempt=2")
    assert re.fullmatch(r"\S+ \S+ INFO http api POST /graphql 200 12\.3ms", lines[2]), lines[2]
    assert lines[3].endswith(r"INFO http api GET /a%20path\nforged%20line 404 1.0ms")  # one line, always


def test_the_action_and_access_lines_in_json():
    text = logged("json", lambda: (
        logs.log_action("recipe", "create.recipe.pending", "dead_lettered", 0.0, TRACE_ID, action_id="a1",
                        layer="payload"),
        logs.log_request("api", "POST", "/graphql", 200, 0.0123),
        logging.getLogger("gateway").warning("something %s", "odd"),
    ))
    action, access, other = [json.loads(line) for line in text.splitlines()]
    assert action["level"] == "WARNING" and action["logger"] == "nautilus_core.actions"
    assert {k: action[k] for k in ("service", "action_type", "outcome", "duration_ms", "trace_id", "action_id",
                                   "layer")} == {"service": "recipe", "action_type": "create.recipe.pending",
                                                 "outcome": "dead_lettered", "duration_ms": 0.0,
                                                 "trace_id": TRACE_ID, "action_id": "a1", "layer": "payload"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", action["time"])
    assert {k: access[k] for k in ("service", "method", "path", "status", "duration_ms")} == {
        "service": "api", "method": "POST", "path": "/graphql", "status": 200, "duration_ms": 12.3}
    assert other["message"] == "something odd" and other["logger"] == "gateway"


def test_the_trace_id_comes_from_a_w3c_traceparent():
    assert logs.trace_id({"traceparent": TRACEPARENT}) == TRACE_ID
    for envelope in ({}, {"traceparent": None}, {"traceparent": "garbage"}, "not a dict",
                     {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"}, {"traceparent": TRACEPARENT.upper()}):
        assert logs.trace_id(envelope) == "-"


def publish(broker_url, envelope):
    """An envelope as a Celery task message on the exchange, as another peer (with a traceparent) sends it."""
    body = json.dumps([[envelope], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    with Connection(broker_url) as connection:
        exchange = actions_exchange("nautilus.actions")
        Producer(connection.channel(), exchange=exchange).publish(
            body.encode(), routing_key=envelope["action_type"], content_type="application/json",
            content_encoding="utf-8", headers={"task": "nautilus.action", "id": envelope["action_id"]},
            declare=[exchange])


def envelope(name):
    return {"action_type": "create.recipe.pending", "payload": {"name": name}, "action_id": str(uuid.uuid4()),
            "correlation_id": None, "sender": "tests", "traceparent": TRACEPARENT}


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_runservice_logs_each_action_and_request(cloud, bus, broker_url, log_format):
    """A quiet runservice (as cloud up runs it): our lines, not Celery's."""
    env = {**cloud.env(RECIPES), "NAUTILUS_LOG_VERBOSE": "0", "NAUTILUS_LOG_FORMAT": log_format}
    manage(RECIPES, "migrate", "--verbosity=0", env=env)
    service = ServiceProcess(RECIPES, env, log_dir=cloud.log_dir, http_port=free_port()).start().wait_ready()
    try:
        publish(broker_url, envelope("traced"))
        bus.ask("create.recipe.pending", {"name": "untraced"}, timeout=10)
        try:
            urllib.request.urlopen(f"{service.url}/graphql?query=%7B__typename%7D", timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 403  # internal: no token
        deadline = time.monotonic() + 10
        while service.log().count("create.recipe.pending") < 2 or "/graphql" not in service.log():
            assert time.monotonic() < deadline, service.log()
            time.sleep(0.1)
    finally:
        service.stop()
    log = service.log()
    assert "Task nautilus.action" not in log and "[config]" not in log and "SecurityWarning" not in log
    assert "No hostname was supplied" not in log
    if log_format == "text":
        traced, asked = [m.group(1) for m in ACTION_LINE.finditer(log)]
        assert traced == TRACE_ID and re.fullmatch("[0-9a-f]{32}", asked) and asked != TRACE_ID, log
        assert len(ACCESS_LINE.findall(log)) == 1, log
        return
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    actions = [r for r in records if r.get("action_type") == "create.recipe.pending"]
    assert [(a["service"], a["outcome"]) for a in actions] == [("recipe", "success")] * 2, log
    assert actions[0]["trace_id"] == TRACE_ID and re.fullmatch("[0-9a-f]{32}", actions[1]["trace_id"]), log
    assert all(isinstance(a["duration_ms"], float) and a["action_id"] for a in actions)
    access = [r for r in records if r.get("path") == "/graphql"]
    assert [(r["method"], r["status"]) for r in access] == [("GET", 403)], log
    assert any(r["message"].endswith(" ready.") for r in records)  # cloud up and the test kit wait for it


def cloud_up(tmp_path, *options):
    """``cloud up`` on the embedded default until it is up: ``(output lines until "up", the process, lines)``."""
    lines = []
    process = subprocess.Popen([sys.executable, "manage.py", "cloud", "up", "examples/recipe_book", "--port", "0",
                                "--no-color", *options], cwd=PROJECT_DIR,
                               env={**base_env(tmp_path), "NAUTILUS_LOG_VERBOSE": ""},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=lambda: lines.extend(line.rstrip() for line in process.stdout), daemon=True).start()
    deadline = time.monotonic() + 150
    while not any(GATEWAY_URL.search(line) for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.send_signal(signal.SIGTERM)
            pytest.fail("the cloud did not come up:\n" + "\n".join(lines[-80:]))
        time.sleep(0.2)
    up = next(i for i, line in enumerate(lines) if GATEWAY_URL.search(line))
    return lines[:up + 1], process, lines


def stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def test_a_quiet_cloud_up_stays_within_its_line_budget(tmp_path):
    until_up, process, _ = cloud_up(tmp_path)
    stop(process)
    text = "\n".join(until_up)
    assert len(until_up) <= LINE_BUDGET, text
    assert "migrating" in text and "is up on" in text
    for noise in ("[config]", "Task nautilus.action", "SecurityWarning", "No hostname was supplied", "[tasks]"):
        assert noise not in text, text
    if os.geteuid() == 0:  # Celery's warning against root, said once for the cloud
        assert text.count("running as root") == 1, text


def test_cloud_up_verbose_brings_back_celery(tmp_path):
    until_up, process, lines = cloud_up(tmp_path, "--verbose")
    time.sleep(1)
    stop(process)
    text = "\n".join(lines)
    assert text.count("[config]") == 5, text  # a banner per worker
    assert " roll_call done " in text  # the DEBUG lines of the roll calls every worker answers
    assert len(until_up) > LINE_BUDGET
