"""The original library's API, in Django terms: every example of its reference runs (tests/original_api/).

Where a name cannot keep its old meaning, it raises an error that says what to use instead.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from django.db import models as django_models

import nautilus
import nautilus.models as models
from nautilus.testing import MemoryBus
from nautilus_core.service import ServiceMisconfigured
from nautilus_core.testing import free_port, manage

from .conftest import PROJECT_DIR, Cloud, graphql

MODEL_EXAMPLE = "tests.original_api.model_example.settings"
SERVICE_EXAMPLE = "tests.original_api.service_example.settings"
CONNECTION_EXAMPLE = "tests.original_api.connection_example.settings"
GATEWAY_EXAMPLE = "tests.original_api.gateway_example.settings"


def django_child(settings, code, env=None):
    """Run ``code`` after ``django.setup()`` with ``settings`` in a child process; its stdout."""
    done = subprocess.run([sys.executable, "-c", f"import django; django.setup()\n{code}"], cwd=PROJECT_DIR,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": settings, **(env or {})},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


# -- the ModelService example: its config's database_url, and the service on the bus -------------


def test_the_config_database_url_is_the_service_database_unless_DATABASE_URL_is_set():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    code = "from django.db import connection; print(connection.settings_dict['NAME'])"
    done = subprocess.run([sys.executable, "-c", f"import django; django.setup()\n{code}"], cwd=PROJECT_DIR,
                          env={**env, "DJANGO_SETTINGS_MODULE": MODEL_EXAMPLE, "NAUTILUS_SECRET_KEY": "t"},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "/tmp/models.db", done.stderr
    assert django_child(MODEL_EXAMPLE, code, {"DATABASE_URL": "sqlite:////tmp/elsewhere.db"}) == "/tmp/elsewhere.db"


def test_a_database_url_given_after_the_database_was_opened_is_refused(monkeypatch, db):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    from django.db import connection

    connection.ensure_connection()
    with pytest.raises(ImproperlyConfigured, match="set `database_url` on the class's `config`"):
        nautilus.Service(name="late", config={"database_url": "sqlite:////tmp/late.db"})


def test_the_model_service_example_runs(broker_url, databases, bus, tmp_path):
    cloud = Cloud(broker_url, databases, tmp_path)  # stopped at the end: the next example answers for "model" too
    try:
        cloud.start(MODEL_EXAMPLE)
        created = bus.ask("create.model.pending", {"name": "first"}, timeout=20)
        assert created.action_type == "create.model.success" and created.payload["name"] == "first"
        read = bus.ask("read.model.pending", {"query": "{ all_models { name } }"}, timeout=20)
        assert read.payload["data"] == {"all_models": [{"name": "first"}]}
    finally:
        cloud.stop_all()


# -- the Service example: create_model_schema, crud_handler, route, run(host, port, shutdown_timeout)


def test_the_service_example_runs_with_init_db_and_run(broker_url, databases, bus, tmp_path):
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SERVICE_EXAMPLE, "NAUTILUS_BROKER_URL": broker_url,
           "DATABASE_URL": databases.create("service_example"), "NAUTILUS_SECRET_KEY": "tests-only",
           "PYTHONUNBUFFERED": "1", "NAUTILUS_OPEN_SERVICE_APIS": "1"}  # its /graphql answered anyone
    script = ("import django; django.setup()\n"
              "from nautilus_core.service import get_service\n"
              "service = get_service(); service.init_db()\n"
              "from django.http import HttpResponse\n"
              "service.add_http_endpoint('/added', lambda request: HttpResponse('added'))\n"
              "print('models', [m.__name__ for m in service.get_models()], flush=True)\n"
              f"service.run('127.0.0.1', {port}, shutdown_timeout=5.0)\n")
    log = open(tmp_path / "service.log", "w")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_DIR, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while " ready." not in (tmp_path / "service.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "service.log").read_text()
            time.sleep(0.2)
        created = bus.ask("create.model.pending", {"name": "soup"}, timeout=20)
        assert created.action_type == "create.model.success", created.payload
        assert bus.ask("read.model.pending", {"query": "{ all_models { name pk } }"}, timeout=20).payload["data"] == {
            "all_models": [{"name": "soup", "pk": str(created.payload["id"])}]}
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/", timeout=10) as response:
            assert response.read() == b"hello world"
        with urllib.request.urlopen(f"{url}/added", timeout=10) as response:
            assert response.read() == b"added"
        assert graphql(url, "{ all_models { name } }") == (200, {"data": {"all_models": [{"name": "soup"}]}})
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        log.close()
    output = (tmp_path / "service.log").read_text()
    assert code == 0 and "models []" in output, output[-3000:]  # a plain Service owns no model


# -- the ConnectionService and APIGateway examples: refused, with what to do instead --------------


@pytest.mark.parametrize("settings, message", [
    (CONNECTION_EXAMPLE, "nautilus.E020"),
    (GATEWAY_EXAMPLE, "nautilus.E030"),
])
def test_examples_that_cannot_keep_their_meaning_say_what_to_do(settings, message):
    checked = manage(settings, "check", env={"NAUTILUS_SECRET_KEY": "tests-only"}, check=False)
    assert checked.returncode == 1 and message in checked.stderr, checked.stderr
    assert {"nautilus.E020": "Name each side", "nautilus.E030": "Remove it"}[message] in checked.stderr


# -- the rest of the original names ---------------------------------------------------------------


def test_fields_keep_the_original_defaults():
    field = models.fields.CharField()
    assert isinstance(field, django_models.CharField) and field.max_length == 255
    assert field.deconstruct()[1] == "django.db.models.CharField"
    assert models.fields.CharField(max_length=20).max_length == 20
    decimal = models.fields.DecimalField()
    assert (decimal.max_digits, decimal.decimal_places) == (10, 5)
    assert models.fields.PrimaryKeyField().primary_key
    assert models.fields.BlobField is django_models.BinaryField
    assert models.fields.IntegerField is django_models.IntegerField
    assert models.BaseModel._meta.abstract


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_a_char_field_without_max_length_takes_255_characters(value):
    field = models.fields.CharField()
    if len(value) <= 255:
        field.run_validators(value)
    else:
        with pytest.raises(ValidationError, match="at most 255 characters"):
            field.run_validators(value)


def test_names_that_are_gone_say_what_to_use_instead():
    from nautilus._gone import Gone

    with pytest.raises(Gone, match="Django view"):
        from nautilus.network.http import RequestHandler  # noqa: F401
    with pytest.raises(Gone, match="on_action"):
        from nautilus.network import ActionHandler  # noqa: F401
    with pytest.raises(Gone, match="TextField"):
        models.fields.BareField  # noqa: B018
    with pytest.raises(AttributeError, match="manage.py runservice"):
        nautilus.ServiceManager  # noqa: B018
    with pytest.raises(Gone, match="graphene.Schema"):
        from nautilus.api import Schema  # noqa: F401

    class OldHandler:
        pass

    with pytest.raises(ServiceMisconfigured, match="ActionHandler classes are gone"):
        nautilus.Service(name="old", action_handler=OldHandler)
    service = nautilus.Service(name="web")
    with pytest.raises(TypeError, match="not a Django view"):
        service.add_http_endpoint("/old", OldHandler)


def greet(service, action_type, payload, props):
    if action_type == "greet.person.pending":
        if not payload.get("name"):
            raise nautilus.ActionError("Whom should I greet?", "invalid")
        return {"greeting": f"hello {payload['name']}", "by": service.name, "asked": props["correlation_id"]}
    return None  # every other action on the bus: nothing to say


async def greet_async(service, action_type, payload, props):
    return greet(service, action_type, payload, props)


@pytest.mark.django_db
@pytest.mark.parametrize("handler", [greet, greet_async])
def test_an_action_handler_function_gets_every_action(handler):
    service = nautilus.Service(name="greeter", action_handler=handler, config={"greeting": "hi"}, auth=False)
    assert service.config.greeting == "hi" and [b.routing_key for b in service.queue().bindings] == ["#"]
    with MemoryBus(service) as bus:
        reply = bus.ask("greet.person.pending", {"name": "Ada"})
        assert reply.payload == {"greeting": "hello Ada", "by": "greeter", "asked": reply.correlation_id}
        assert bus.ask("greet.person.pending", {}).payload["message"] == "Whom should I greet?"
        bus.publish("create.recipe.success", {"id": 1})  # someone else's news: handled, unanswered
        assert bus.deliver() == 1 and not bus.dead_letters
        service.announce()
        announced, = bus.of_type("init.service.pending")
        assert announced["payload"]["name"] == "greeter"
    assert service.get_models() == []
    service.cleanup()


class Greeter(nautilus.Service):
    action_handler = greet  # a class attribute, as in the original


@pytest.mark.django_db
def test_an_action_handler_class_attribute_and_an_endpoint():
    from django.http import HttpResponse

    service = Greeter()
    service.add_http_endpoint("/hello", lambda request: HttpResponse("hello"))
    assert ("hello", ) == tuple(route for route, _, _ in service.get_routes())
    with MemoryBus(service) as bus:
        assert bus.ask("greet.person.pending", {"name": "Bo"}).payload["greeting"] == "hello Bo"
    assert json.dumps(service.summarize())


def shout(service, action_type, payload, props):
    return "ok"  # the original's handlers returned nothing and sent replies themselves


@pytest.mark.django_db
def test_an_action_handler_that_returns_no_dict_fails_and_is_dead_lettered():
    from django.test import override_settings

    with override_settings(NAUTILUS={"MAX_RETRIES": 1}):
        with MemoryBus(nautilus.Service(name="shouter", action_handler=shout)) as bus:
            reply = bus.ask("shout.it.pending")
            assert reply.action_type == "shout.it.error" and reply.payload["code"] == "internal_error"
            # it gets every action, its own .error broadcast too, and fails on that one as well
            letters = bus.dead_letters
            assert [letter["routing_key"] for letter in letters] == ["shout.it.pending", "shout.it.error"]
            assert all(letter["attempts"] == 2 and "returns the .success payload (a dict) or None" in letter["reason"]
                       for letter in letters)
