"""The Service base class in process: names, routes, handlers, checks (no shared class state)."""
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.http import HttpResponse
from django.test import override_settings

import nautilus
from nautilus_core.actions import ROLL_CALL, TRACE, Action
from nautilus_core.checks import check_service
from nautilus_core.service import get_service
from tests.kitchen.models import Tag

from .conftest import PROJECT_DIR


class BrokenModelService(nautilus.ModelService):
    pass


class Greeter(nautilus.Service):
    @nautilus.on_action("greet.person.pending")
    def greet(self, action):
        if not action.payload.get("name"):
            raise nautilus.ActionError("Whom should I greet?", "invalid")
        return {"greeting": f"hello {action.payload['name']}"}


class Other(nautilus.Service):
    pass


@Greeter.route("/hello")
def hello(request):
    return HttpResponse("hello")


def test_names_follow_the_original_conventions():
    assert Greeter().name == "greeter"
    assert type("MyService1", (nautilus.Service,), {})().name == "myService1"
    assert Greeter(name="explicit").name == "explicit"
    assert nautilus.ModelService(model=Tag).name == "tag"


def test_routes_and_handlers_belong_to_their_own_class():
    # the original kept every service's routes in one list shared by all classes
    assert [r[0] for r in Greeter().get_routes()] == ["hello"]
    assert Other().get_routes() == [] and nautilus.Service().get_routes() == []
    assert set(Greeter().handlers) == {"greet.person.pending", ROLL_CALL, TRACE}
    assert set(Other().handlers) == {ROLL_CALL, TRACE}


@pytest.mark.django_db
def test_a_custom_handler_answers_success_and_error():
    service = Greeter()
    ok = service.perform(service.handlers["greet.person.pending"], Action("greet.person.pending", {"name": "ada"}))
    assert (ok.action_type, ok.payload) == ("greet.person.success", {"greeting": "hello ada"})
    bad = service.perform(service.handlers["greet.person.pending"], Action("greet.person.pending", {}))
    assert bad.action_type == "greet.person.error"
    assert bad.payload == {"message": "Whom should I greet?", "code": "invalid", "details": {}}


def test_the_queue_is_bound_to_exactly_the_handled_action_types():
    queue = nautilus.ModelService(model=Tag).queue()
    assert queue.name == "nautilus.tag" and queue.durable
    assert sorted(b.routing_key for b in queue.bindings) == [
        "create.tag.pending", "delete.tag.pending", "read.tag.pending", "roll_call", "trace.service.pending",
        "update.tag.pending"]


@pytest.mark.parametrize("service, check_id", [
    (None, "nautilus.E001"),
    ("tests.test_service_class.BrokenModelService", "nautilus.E010"),
    ("tests.no_such_module.Service", "nautilus.E002"),
])
def test_misconfiguration_fails_the_system_check(service, check_id):
    with override_settings(NAUTILUS={"SERVICE": service}):
        assert [e.id for e in check_service()] == [check_id]
        with pytest.raises(SystemCheckError, match=check_id):
            call_command("check")
    assert get_service().name == "recipe"  # the cache was reset with the settings


def test_a_service_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k not in ("NAUTILUS_SECRET_KEY", "NAUTILUS_DEMO")}
    result = subprocess.run([sys.executable, "manage.py", "check", "--settings=examples.recipe_book.recipes.settings"],
                            cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "NAUTILUS_SECRET_KEY is not set" in result.stderr
