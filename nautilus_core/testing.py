"""Helpers for testing services against a real broker, shipped with the library.

- ``ServiceProcess``: a service's worker (and optionally its HTTP server) as child
  processes, started and stopped by their own PID.
- ``BusRecorder``: a private queue bound to some action types, to see what was published.
- ``virtual_host``, ``redis_keyspace`` and ``Databases``: a RabbitMQ virtual host, a Redis key
  prefix and PostgreSQL databases of a run's own, so runs on one machine do not see each
  other's queues or rows.
"""
import contextlib
import json
import os
import shutil
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kombu import Consumer, Queue, binding

from .brokers import connection as broker_connection
from .bus import actions_exchange, envelope_of_task_message
from .process import django_command

__all__ = ["ServiceProcess", "BusRecorder", "BrokerProxy", "manage", "virtual_host", "redis_keyspace", "Databases",
           "dead_letters", "drain_for", "free_port"]


def manage(settings, *args, env=None, check=True, timeout=120):
    """Run ``django-admin <args>`` for a service's settings in a child process (in the current folder)."""
    return subprocess.run(
        django_command(*args, settings=settings),
        env={**os.environ, **(env or {})}, check=check, timeout=timeout,
        capture_output=True, text=True,
    )


class ServiceProcess:
    """One worker process of a service, with the given environment (broker, database)."""

    def __init__(self, settings, env, *, log_dir=None, pool="solo", name=None, http_port=None, http_processes=None,
                 netns=None):
        self.settings = settings
        # a network namespace to run in (``ip netns exec``, which execs: the PID is still the worker's); meant for
        # a worker: ``url`` and ``wait_ready`` look for an HTTP server on this machine's loopback
        self.netns = netns
        # verbose (unless ``env`` says otherwise): Celery's task and retry lines too, for tests to read
        self.env = {**os.environ, "NAUTILUS_LOG_VERBOSE": "1", **env, "DJANGO_SETTINGS_MODULE": settings,
                    "PYTHONUNBUFFERED": "1"}
        self.pool = pool
        self.name = name or settings.rsplit(".", 2)[-2]
        self.http_port = http_port
        self.http_processes = http_processes  # with http_port: runservice's --http-processes
        self.log_path = Path(log_dir or "/tmp") / f"nautilus-{self.name}-{uuid.uuid4().hex[:8]}.log"
        self.process = None

    @property
    def url(self):
        """With ``http_port``: the service runs as ``manage.py runservice`` (HTTP and worker)."""
        return f"http://127.0.0.1:{self.http_port}" if self.http_port else None

    def command(self):
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        if self.http_port:
            processes = [f"--http-processes={self.http_processes}"] if self.http_processes else []
            return [*netns, *django_command("runservice", f"127.0.0.1:{self.http_port}", *processes)]
        return [*netns, sys.executable, "-m", "celery", "-A", "nautilus_core", "worker", f"--pool={self.pool}",
                "--loglevel=INFO", "--without-mingle", "--without-gossip",
                f"--hostname={self.name}.{uuid.uuid4().hex[:6]}@%h"]

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self):
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(), env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout=60):
        """Wait until the worker logged that it is ready to consume."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} worker exited ({self.process.returncode}):\n{self.log()}")
            if " ready." in self.log() and (not self.http_port or _answers(f"{self.url}/health")):
                return self
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} worker not ready after {timeout}s:\n{self.log()}")

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, timeout=20):
        """Warm shutdown (SIGTERM) by PID; SIGKILL if it does not stop in time."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self):
        """``kill -9`` by PID: the worker dies mid-flight, unacked actions are redelivered."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self):
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self.start().wait_ready()

    def __exit__(self, *exc):
        self.stop()


def _answers(url):
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drain_for(connection, seconds):
    """Let a kombu connection's consumers take what arrives within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection.drain_events(timeout=max(0.01, deadline - time.monotonic()))
        except (TimeoutError, OSError):
            pass


class BusRecorder:
    """Records the envelopes published on the exchange under some routing-key patterns."""

    def __init__(self, broker_url, patterns=("#",), exchange="nautilus.actions", transport_options=None):
        self.connection = broker_connection(broker_url, **(transport_options or {}))
        exchange = actions_exchange(exchange)
        self.queue = Queue(f"nautilus.test-recorder.{uuid.uuid4().hex}", exchange=exchange,
                           bindings=[binding(exchange, routing_key=p) for p in patterns],
                           durable=False, auto_delete=True)
        self.channel = self.connection.channel()
        self.queue(self.channel).declare()
        self.envelopes = []
        self.raw_bodies = []
        self.consumer = Consumer(self.channel, queues=[self.queue], callbacks=[self._on_message],
                                 accept=["json"], no_ack=True)
        self.consumer.consume()

    def _on_message(self, body, message):
        self.raw_bodies.append(message.body if isinstance(message.body, str) else message.body.decode())
        envelope = envelope_of_task_message(body)
        if envelope is not None:
            self.envelopes.append(envelope)

    def drain(self, seconds=0.2):
        """Collect what arrives within ``seconds``."""
        drain_for(self.connection, seconds)
        return self.envelopes

    def wait_for(self, predicate, timeout=10):
        """Drain until an envelope satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for envelope in self.envelopes:
                if predicate(envelope):
                    return envelope
            self.drain(0.1)
        seen = json.dumps([e.get("action_type") for e in self.envelopes])
        raise TimeoutError(f"no matching envelope within {timeout}s; saw {seen}")

    def of_type(self, action_type):
        return [e for e in self.envelopes if e.get("action_type") == action_type]

    def close(self):
        try:
            self.consumer.cancel()
            self.queue(self.channel).delete()
        finally:
            self.connection.release()


def _with_path(url, path):
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, "", ""))


@contextlib.contextmanager
def virtual_host(broker_url, name):
    """A fresh RabbitMQ virtual host (via rabbitmqctl), deleted on exit; yields its URL.

    Without rabbitmqctl on this machine, yields ``broker_url`` unchanged (no isolation).
    """
    if shutil.which("rabbitmqctl") is None:
        yield broker_url
        return

    def ctl(*args):
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, urlsplit(broker_url).username or "guest", ".*", ".*", ".*")
        yield _with_path(broker_url, name)
    finally:
        ctl("delete_vhost", name)


@contextlib.contextmanager
def redis_keyspace(broker_url, prefix, **environ):
    """Every Redis key this process and its children write starts with ``prefix``
    (``NAUTILUS_REDIS_KEY_PREFIX``, with the other ``NAUTILUS_*`` variables in ``environ``); on exit
    those keys are deleted, and only those: other runs share the database. Yields ``broker_url``."""
    import redis

    environ = {"NAUTILUS_REDIS_KEY_PREFIX": prefix, **environ}
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        yield broker_url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        client = redis.Redis.from_url(broker_url)
        try:
            keys = list(client.scan_iter(match=re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*", count=1000))
            for start in range(0, len(keys), 500):
                client.unlink(*keys[start:start + 500])
        finally:
            client.close()


class Databases:
    """PostgreSQL databases created on the server of ``url``; ``drop_all`` removes them."""

    def __init__(self, url, prefix):
        self.url = url
        self.prefix = prefix
        self.names = []

    def _admin(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def create(self, label):
        name = f"{self.prefix}_{label}_{len(self.names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return _with_path(self.url, name)

    def drop_all(self):
        with self._admin() as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dead_letters(broker_url, queue="nautilus.dead", wait=0.5):
    """Take every record out of the dead-letter queue (waiting ``wait`` seconds for more after the last).

    The queue is not declared here: its arguments (its bounds) are the services' to set.
    """
    letters = []
    with broker_connection(broker_url) as conn:
        channel = conn.channel()
        dead = Queue(queue, channel=channel, no_declare=True)
        quiet_until = time.monotonic() + wait
        while True:
            try:
                message = dead.get(no_ack=True)
            except conn.channel_errors:  # no dead-letter queue yet
                return letters
            if message is not None:
                letters.append(json.loads(message.body))
                quiet_until = time.monotonic() + wait
            elif time.monotonic() >= quiet_until:
                return letters
            else:
                time.sleep(0.02)


class BrokerProxy:
    """A TCP proxy between this test's processes and RabbitMQ (or any ``upstream``), which the test cuts.

    Stopping the machine's RabbitMQ would break other test runs that use it at the same time,
    so an outage is simulated: ``cut`` closes every connection through the proxy and
    refuses new ones (as a stopped broker does), ``restore`` accepts them again.

    It listens on ``host`` (127.0.0.1 by default): another address of this machine, such as the
    host side of a veth pair, lets processes in a network namespace reach a server that listens
    on 127.0.0.1 only (``tests/test_hosts.py`` proxies RabbitMQ and PostgreSQL so).
    """

    def __init__(self, upstream=("127.0.0.1", 5672), host="127.0.0.1"):
        self.upstream, self.host = upstream, host
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.sockets, self.lock, self.open = set(), threading.Lock(), threading.Event()
        self.open.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url):
        """``url`` (``scheme://user@host:port/…``, a broker's or a database's) through the proxy."""
        return re.sub(r"@[^/]+/", f"@{self.host}:{self.port}/", url, count=1)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.open.clear()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets.clear()

    def restore(self):
        self.open.set()

    def close(self):
        self.cut()
        self.listener.close()
