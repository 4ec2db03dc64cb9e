"""Fixtures that run real services against the local RabbitMQ, Redis and PostgreSQL.

Each test session gets a RabbitMQ virtual host, a Redis key prefix and PostgreSQL databases
of its own, so concurrent runs on one machine do not see each other's queues or rows.
Worker processes are started by fixtures and stopped by their PID.

The broker: every test that uses ``broker_url`` (directly or through ``cloud``, ``bus``…) runs
on RabbitMQ; a module (or test) marked ``@pytest.mark.brokers("rabbitmq", "redis")`` runs on
Redis too, as a second parametrization (``test_x[rabbitmq]``, ``test_x[redis]``).
``NAUTILUS_TEST_BROKERS=rabbitmq`` (or ``redis``) keeps one of them.
"""
import os
import uuid
from pathlib import Path

import pytest
from kombu import Queue

from nautilus.testing import graphql  # noqa: F401  (the tests import it from here)
from nautilus_core.brokers import connection as broker_connection
from nautilus_core.bus import connect
from nautilus_core.internal import HEADER, derive_internal_token
from nautilus_core.testing import (BusRecorder, Databases, ServiceProcess, free_port, manage, redis_keyspace,
                                   virtual_host)

PROJECT_DIR = Path(__file__).resolve().parent.parent  # this checkout: the tests run its manage.py
RUN_ID = uuid.uuid4().hex[:8]
BROKER_URL = os.environ.get("NAUTILUS_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = os.environ.get("NAUTILUS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
BROKERS = os.environ.get("NAUTILUS_TEST_BROKERS", "rabbitmq,redis").split(",")
DATABASE_URL = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
# Seconds before Redis gives an unacknowledged action to another worker: short, so that the
# tests that kill a worker see its actions redelivered within seconds (the default is 300).
REDIS_VISIBILITY_TIMEOUT = "8"

SECRET_KEY = "tests-only"  # every service the tests start shares it
# a service's own /graphql is internal (nautilus_core.internal): the tests are the cloud's inside
INTERNAL = {HEADER: derive_internal_token(SECRET_KEY)}

RECIPES = "examples.recipe_book.recipes.settings"
INGREDIENTS = "examples.recipe_book.ingredients.settings"
CONNECTION = "examples.recipe_book.ingredients_connection.settings"
GATEWAY = "examples.recipe_book.gateway.settings"
USERS = "examples.recipe_book.users.settings"


def pytest_configure(config):
    config.addinivalue_line("markers", "brokers(*names): the brokers a test runs on (default: rabbitmq)")


def pytest_generate_tests(metafunc):
    if "broker_url" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("brokers")
        brokers = [b for b in (marker.args if marker else ("rabbitmq",)) if b in BROKERS]
        metafunc.parametrize("broker_url", brokers, indirect=True, scope="session")


def pytest_collection_modifyitems(config, items):
    """A test none of whose brokers is in NAUTILUS_TEST_BROKERS is deselected (not skipped)."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        wants_a_broker = "broker_url" in getattr(item, "fixturenames", ())
        on = callspec.params.get("broker_url") if callspec else None
        (dropped if wants_a_broker and on not in BROKERS else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def broker_url(request):
    """The broker of this test run: a RabbitMQ virtual host, or a Redis key prefix, of its own."""
    if request.param == "redis":
        with redis_keyspace(REDIS_URL, f"nautilus-test-{RUN_ID}:",
                            NAUTILUS_REDIS_VISIBILITY_TIMEOUT=REDIS_VISIBILITY_TIMEOUT) as url:
            yield url
        return
    if not BROKER_URL.startswith("amqp"):
        pytest.fail(f"these tests need RabbitMQ; NAUTILUS_BROKER_URL is {BROKER_URL!r}")
    with virtual_host(BROKER_URL, f"nautilus-test-{RUN_ID}") as url:
        yield url


@pytest.fixture(scope="session")
def databases():
    if not DATABASE_URL.startswith("postgres"):
        pytest.fail(f"these tests need PostgreSQL; DATABASE_URL is {DATABASE_URL!r}")
    dbs = Databases(DATABASE_URL, prefix=f"nautilus_test_{RUN_ID}")
    yield dbs
    dbs.drop_all()


class Cloud:
    """Starts services (migrated, on their own database) and stops every one by PID."""

    def __init__(self, broker_url, databases, log_dir):
        self.broker_url = broker_url
        self.databases = databases
        self.log_dir = log_dir
        self.processes = []

    def env(self, settings, database_url=None):
        return {
            "NAUTILUS_BROKER_URL": self.broker_url,
            "DATABASE_URL": database_url or self.databases.create(settings.rsplit(".", 2)[-2]),
            "NAUTILUS_SECRET_KEY": SECRET_KEY,
        }

    def start(self, settings, workers=1, env=None, http=False):
        """Migrate a fresh database for the service and start ``workers`` processes on it
        (with ``http``, as ``runservice``: HTTP and a worker; its URL is ``.url``)."""
        env = env or self.env(settings)
        manage(settings, "migrate", "--verbosity=0", env=env)
        started = [ServiceProcess(settings, env, log_dir=self.log_dir, http_port=free_port() if http else None).start()
                   for _ in range(workers)]
        self.processes.extend(started)
        for process in started:
            process.wait_ready()
        return started if workers > 1 else started[0]

    def stop_all(self):
        for process in self.processes:
            process.stop()


@pytest.fixture(scope="module")
def cloud(broker_url, databases, tmp_path_factory):
    cloud = Cloud(broker_url, databases, tmp_path_factory.mktemp("logs"))
    yield cloud
    cloud.stop_all()


@pytest.fixture(scope="session")
def bus(broker_url):
    bus = connect(broker_url, sender="test")
    yield bus
    bus.close()


@pytest.fixture
def recorder(broker_url):
    recorders = []

    def record(*patterns):
        recorders.append(BusRecorder(broker_url, patterns or ("#",)))
        return recorders[-1]

    yield record
    for r in recorders:
        r.close()


@pytest.fixture(scope="module")
def recipe_service(cloud):
    return cloud.start(RECIPES)


@pytest.fixture(scope="module")
def recipe_book(cloud, request):
    """The example cloud: recipe, ingredient and ingredients workers, then the gateway (runservice).

    The gateway's asks time out after 2 s here, so a stopped service is reported quickly, and
    its session tokens live 3 s, so their expiry can be seen.
    """
    import time

    services = {name: cloud.start(settings) for name, settings in
                (("recipe", RECIPES), ("ingredient", INGREDIENTS), ("ingredients", CONNECTION), ("user", USERS))}
    settings = getattr(request.module, "GATEWAY_SETTINGS", GATEWAY)  # a test module may bring its own gateway
    # announcements that services of earlier modules left in the gateway's durable queue are not this cloud
    with broker_connection(cloud.broker_url) as connection:
        try:
            Queue("nautilus.api", no_declare=True)(connection.channel()).purge()
        except connection.channel_errors:
            pass  # no gateway ran before: nothing to purge
    gateway = cloud.start(settings, http=True, env={**cloud.env(settings), "NAUTILUS_ASK_TIMEOUT": "2",
                                                    "NAUTILUS_ACCESS_TOKEN_LIFETIME": "3",
                                                    **getattr(request.module, "GATEWAY_ENV", {})})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the roll call's answers are recorded
        status, body = graphql(gateway.url, "{ _services }")
        if status == 200 and set(body["data"]["_services"]) >= set(services):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the gateway did not learn the cloud: {body}")
    return {"url": gateway.url, "gateway": gateway, **services}


REGISTER = """
mutation Register($email: String!, $password: String!) {
  registerUser(email: $email, password: $password) { user { id email } sessionToken refreshToken }
}"""


def register(url, email, password="correct horse battery"):
    """Register a user through the gateway; return its ``{"user", "sessionToken", "refreshToken"}``."""
    status, body = graphql(url, REGISTER, {"email": email, "password": password})
    assert status == 200 and "errors" not in body, body
    return body["data"]["registerUser"]


def bearer(session):
    return {"Authorization": f"Bearer {session['sessionToken']}"}
