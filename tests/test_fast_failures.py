"""Fast, named failures: an ask nobody can receive, and a broker that cannot be used, fail at once and say why."""
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from kombu import Connection, Queue, binding

from nautilus_core.bus import AskTimeout, NoHandler, actions_exchange, connect
from nautilus_core.settings import embedded_transport_options
from nautilus_core.testing import free_port

from .conftest import PROJECT_DIR

from .conftest import RECIPES


def test_an_ask_nobody_handles_fails_at_once_on_rabbitmq(bus):
    started = time.monotonic()
    with pytest.raises(NoHandler, match=r"^no service handles explode\.recipe\.pending$"):
        bus.ask("explode.recipe.pending", {}, timeout=5)
    assert time.monotonic() - started < 1


def test_an_ask_nobody_handles_fails_at_once_on_the_embedded_bus(tmp_path):
    options = embedded_transport_options(tmp_path)
    bus = connect("filesystem://", sender="test", transport_options=options)
    try:
        started = time.monotonic()
        with pytest.raises(NoHandler, match="no service handles explode.recipe.pending"):
            bus.ask("explode.recipe.pending", {}, timeout=5)
        assert time.monotonic() - started < 1
        # a type some queue is bound to is asked, and waits for its answer
        exchange = actions_exchange("nautilus.actions")
        with Connection("filesystem://", transport_options=options) as conn:
            Queue("nautilus.probe", exchange=exchange,
                  bindings=[binding(exchange, routing_key="create.probe.pending")])(conn.channel()).declare()
        with pytest.raises(AskTimeout):
            bus.ask("create.probe.pending", {}, timeout=0.3)
    finally:
        bus.close()


def test_manage_ask_names_a_type_nobody_handles(broker_url):
    env = {"NAUTILUS_BROKER_URL": broker_url, "NAUTILUS_SECRET_KEY": "tests-only"}
    started = time.monotonic()
    asked = manage_command(["ask", "explode.recipe.pending", "{}", f"--settings={RECIPES}"], env)
    assert asked.returncode == 1 and "no service handles explode.recipe.pending" in asked.stderr
    assert time.monotonic() - started < 10


# -- a broker that cannot be used ----------------------------------------------------------


def manage_command(args, env, timeout=60):
    import os

    return subprocess.run([sys.executable, str(PROJECT_DIR / "manage.py"), *args], cwd=PROJECT_DIR,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def with_netloc(url, netloc=None, path=None):
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=netloc or parts.netloc, path=path or parts.path))


def _closed_port():
    port = free_port()
    with socket.socket() as s:  # nothing listens there (bind, never listen)
        s.bind(("127.0.0.1", port))
    return port


BROKEN = {
    "wrong password": lambda url: with_netloc(url, netloc=f"guest:not-the-password@{urlsplit(url).hostname}:"
                                                         f"{urlsplit(url).port or 5672}"),
    "wrong vhost": lambda url: with_netloc(url, path="/no-such-vhost"),
    "nothing listening": lambda url: with_netloc(url, netloc=f"guest:guest@127.0.0.1:{_closed_port()}"),
}
COMMANDS = {
    "ask": ["ask", "read.recipe.pending", "{}", f"--settings={RECIPES}"],
    "runservice": ["runservice", f"127.0.0.1:{free_port()}", f"--settings={RECIPES}"],
    "cloud up": ["cloud", "up", "examples/recipe_book", "--port", "0", "--no-color"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("broken", BROKEN)
def test_a_broker_that_cannot_be_used_stops_the_command_with_one_line(broker_url, tmp_path, command, broken):
    url = BROKEN[broken](broker_url)
    env = {"NAUTILUS_BROKER_URL": url, "NAUTILUS_SECRET_KEY": "tests-only", "NAUTILUS_VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    started = time.monotonic()
    ran = manage_command(COMMANDS[command], env, timeout=60)
    elapsed = time.monotonic() - started
    masked = Connection(url).as_uri()  # kombu's masking: the password shown as **
    assert ran.returncode != 0, ran.stdout + ran.stderr
    assert elapsed < 10, (elapsed, ran.stderr)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot use the broker at {masked}: " in lines[0], ran.stderr
    assert "not-the-password" not in ran.stdout + ran.stderr
    print(f"\n{command}, {broken}: {elapsed:.1f}s: {lines[0]}")
