"""nautilus's pytest plugin: fixtures from one handler on an in-memory bus to a running cloud.

Loaded by pytest when nautilus is installed (the ``pytest11`` entry point); elsewhere
``pytest -p nautilus.testing.plugin``. Every process a fixture starts is stopped by its
own PID when the test (or the module, for a cloud) ends.

- ``nautilus_memory_bus``: a ``MemoryBus``; ``attach`` services to it (needs the ``db`` fixture).
- ``nautilus_broker_url`` (session): ``NAUTILUS_BROKER_URL`` (default: the local RabbitMQ),
  in a virtual host of the session's own when ``rabbitmqctl`` is at hand.
- ``nautilus_databases`` (session): PostgreSQL databases on ``DATABASE_URL``'s server, dropped at the end.
- ``nautilus_service``: ``start(settings, http=False, env=None)`` migrates a fresh database
  and runs the service (a worker; with ``http``, ``runservice``); returns its ServiceProcess.
- ``nautilus_cloud``: ``start(*service_settings, gateway=settings)`` runs services and a
  gateway until it knows them all; returns a ``RunningCloud`` (``url``, ``query``).
- ``nautilus_recorder``: ``record(*patterns)`` returns a ``BusRecorder`` on the broker.
- ``nautilus_broker_proxy``: a ``BrokerProxy`` in front of the broker; ``.url(broker_url)``
  is the broker through it, ``cut()``/``restore()`` make and end an outage.
"""
import os
import time
import uuid
from urllib.parse import urlsplit

import pytest

from nautilus_core.testing import BrokerProxy, BusRecorder, Databases, ServiceProcess, free_port, manage, virtual_host

from . import graphql
from .memory import MemoryBus

__all__ = ["RunningCloud", "nautilus_memory_bus", "nautilus_broker_url", "nautilus_databases", "nautilus_service",
           "nautilus_cloud", "nautilus_recorder", "nautilus_broker_proxy"]

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture
def nautilus_memory_bus():
    bus = MemoryBus()
    yield bus
    bus.close()


@pytest.fixture(scope="session")
def nautilus_broker_url():
    url = os.environ.get("NAUTILUS_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
    if not url.startswith("amqp"):
        pytest.fail(f"nautilus's process fixtures need RabbitMQ; NAUTILUS_BROKER_URL is {url!r}")
    with virtual_host(url, f"nautilus-test-{RUN_ID}") as isolated:
        yield isolated


@pytest.fixture(scope="session")
def nautilus_databases():
    url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    if not url.startswith("postgres"):
        pytest.fail(f"nautilus's process fixtures need PostgreSQL; DATABASE_URL is {url!r}")
    databases = Databases(url.replace("{service}", "postgres"), prefix=f"nautilus_test_{RUN_ID}")
    yield databases
    databases.drop_all()


class _Services:
    """Starts services (each migrated, on a fresh database) and stops every one by PID."""

    def __init__(self, broker_url, databases, log_dir):
        self.broker_url, self.databases, self.log_dir = broker_url, databases, log_dir
        self.processes = []

    def start(self, settings, *, http=False, env=None):
        env = {"NAUTILUS_BROKER_URL": self.broker_url,
               "DATABASE_URL": self.databases.create(settings.rsplit(".", 2)[-2]),
               "NAUTILUS_SECRET_KEY": os.environ.get("NAUTILUS_SECRET_KEY") or "tests-only", **(env or {})}
        manage(settings, "migrate", "--verbosity=0", env=env)
        process = ServiceProcess(settings, env, log_dir=self.log_dir, http_port=free_port() if http else None)
        self.processes.append(process.start())
        return process.wait_ready()

    def stop_all(self):
        for process in self.processes:
            process.stop()


@pytest.fixture
def nautilus_service(nautilus_broker_url, nautilus_databases, tmp_path):
    services = _Services(nautilus_broker_url, nautilus_databases, tmp_path)
    yield services.start
    services.stop_all()


class RunningCloud:
    """Services and their gateway; ``query`` posts GraphQL to the gateway."""

    def __init__(self, services, gateway):
        self.services, self.gateway = services, gateway
        self.url = gateway.url

    def query(self, query, variables=None, headers=None):
        """``(status, body)`` of a GraphQL POST to the gateway."""
        return graphql(self.url, query, variables, headers=headers)

    def wait_for_services(self, count, timeout=60):
        """Until the gateway knows ``count`` services (its roll call was answered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.query("{ _services }")
            if status == 200 and len(body["data"]["_services"]) >= count:
                return self
            time.sleep(0.2)
        raise TimeoutError(f"the gateway knows only {body} after {timeout}s")


@pytest.fixture
def nautilus_cloud(nautilus_broker_url, nautilus_databases, tmp_path):
    services = _Services(nautilus_broker_url, nautilus_databases, tmp_path)

    def start(*service_settings, gateway, env=None):
        started = [services.start(settings, env=env) for settings in service_settings]
        return RunningCloud(started, services.start(gateway, http=True, env=env)).wait_for_services(len(started))

    yield start
    services.stop_all()


@pytest.fixture
def nautilus_recorder(nautilus_broker_url):
    recorders = []

    def record(*patterns):
        recorders.append(BusRecorder(nautilus_broker_url, patterns or ("#",)))
        return recorders[-1]

    yield record
    for recorder in recorders:
        recorder.close()


@pytest.fixture
def nautilus_broker_proxy(nautilus_broker_url):
    parts = urlsplit(nautilus_broker_url)
    proxy = BrokerProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    yield proxy
    proxy.close()
