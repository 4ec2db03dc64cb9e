"""Changes made outside any action (ORM, Django admin) are announced like those made by actions.

Real workers on RabbitMQ and PostgreSQL; the ORM writes run in `manage.py shell` and through the
recipe service's own admin, as an operator would make them.
"""
import http.cookiejar
import re
import urllib.parse
import urllib.request

import pytest

from nautilus_core.testing import manage

from .conftest import CONNECTION, INGREDIENTS, RECIPES

SHELL = "from examples.recipe_book.recipes.models import Recipe\n"


@pytest.fixture(scope="module")
def services(cloud):
    """The recipe service (runservice: HTTP with its admin, and a worker), ingredients and their connection."""
    recipe_env = {**cloud.env(RECIPES), "NAUTILUS_HEARTBEAT": "2"}
    return {"recipe": cloud.start(RECIPES, env=recipe_env, http=True), "recipe_env": recipe_env,
            "ingredient": cloud.start(INGREDIENTS), "connection": cloud.start(CONNECTION)}


def shell(env, code):
    """Run Python in the recipe service's `manage.py shell`; return what it printed."""
    return manage(RECIPES, "shell", "--verbosity=0", "-c", SHELL + code, env=env).stdout.strip()


def test_an_action_announces_its_change_once(services, bus, recorder):
    record = recorder("*.recipe.success")
    reply = bus.ask("create.recipe.pending", {"name": "by an action"}, timeout=10)
    record.wait_for(lambda e: e["action_type"] == "create.recipe.success"
                    and e["payload"]["id"] == reply.payload["id"])
    record.drain(1.5)
    assert len([e for e in record.of_type("create.recipe.success")
                if e["payload"]["id"] == reply.payload["id"]]) == 1


def test_orm_saves_and_deletes_are_announced_with_the_handlers_payloads(services, recorder):
    record = recorder("*.recipe.success")
    pk = int(shell(services["recipe_env"], "r = Recipe.objects.create(name='from the shell', servings=3); print(r.pk)"))
    created = record.wait_for(lambda e: e["action_type"] == "create.recipe.success" and e["payload"]["id"] == pk)
    assert created["payload"]["name"] == "from the shell" and created["payload"]["servings"] == 3
    assert created["sender"] == "recipe"

    shell(services["recipe_env"], f"r = Recipe.objects.get(pk={pk}); r.servings = 5; r.save()")
    updated = record.wait_for(lambda e: e["action_type"] == "update.recipe.success" and e["payload"]["id"] == pk)
    assert updated["payload"]["servings"] == 5

    shell(services["recipe_env"], f"Recipe.objects.get(pk={pk}).delete()")
    deleted = record.wait_for(lambda e: e["action_type"] == "delete.recipe.success" and e["payload"]["id"] == pk)
    assert deleted["payload"] == updated["payload"]  # the row as it was just before the delete
    # nothing is left waiting in the outbox once published
    assert shell(services["recipe_env"], "from nautilus_core.models import OutboxEnvelope; "
                                         "print(OutboxEnvelope.objects.count())") == "0"


def test_a_write_in_a_rolled_back_transaction_is_not_announced(services, recorder):
    record = recorder("*.recipe.success")
    shell(services["recipe_env"], "from django.db import transaction\n"
                                  "try:\n"
                                  "    with transaction.atomic():\n"
                                  "        Recipe.objects.create(name='never was')\n"
                                  "        raise RuntimeError\n"
                                  "except RuntimeError:\n"
                                  "    pass\n")
    record.drain(2)
    assert not [e for e in record.envelopes if e["payload"].get("name") == "never was"]


def test_an_outbox_left_by_a_crash_is_published_by_the_worker(services, recorder):
    """A process that dies between its commit and the publish: the worker's next heartbeat publishes it."""
    record = recorder("*.recipe.success")
    pk = int(shell(services["recipe_env"], "import os\n"
                                           "from django.db import transaction\n"
                                           "with transaction.atomic():\n"
                                           "    r = Recipe.objects.create(name='orphaned')\n"
                                           "    print(r.pk, flush=True)\n"
                                           "    transaction.on_commit(lambda: os._exit(0))\n"))
    # published by the worker's heartbeat (every 2 s here) once the entry is 5 s old
    created = record.wait_for(lambda e: e["action_type"] == "create.recipe.success" and e["payload"]["id"] == pk,
                              timeout=30)
    assert created["payload"]["name"] == "orphaned"


def test_a_delete_in_the_admin_is_announced_and_cascades(services, bus, recorder):
    env = services["recipe_env"]
    recipe = bus.ask("create.recipe.pending", {"name": "admin deletes me"}, timeout=10).payload
    ingredient = bus.ask("create.ingredient.pending", {"name": "salt"}, timeout=10).payload
    link = bus.ask("create.ingredients.pending", {"recipe": recipe["id"], "ingredient": ingredient["id"]},
                   timeout=10).payload
    record = recorder("delete.#")
    manage(RECIPES, "createsuperuser", "--noinput", "--username=admin", "--email=admin@example.com",
           env={**env, "DJANGO_SUPERUSER_PASSWORD": "admin-password-1"}, check=False)

    admin = AdminSession(services["recipe"].url)
    admin.login("admin", "admin-password-1")
    admin.delete("recipes", "recipe", recipe["id"])

    deleted = record.wait_for(lambda e: e["action_type"] == "delete.recipe.success"
                              and e["payload"]["id"] == recipe["id"])
    assert deleted["payload"] == recipe  # the row as it was, as its create's outcome gave it
    cascaded = record.wait_for(lambda e: e["action_type"] == "delete.ingredients.success"
                               and e["payload"]["id"] == link["id"])
    assert cascaded["payload"] == link
    rows = bus.ask("read.ingredients.pending", {"query": "{ all_models { pk } }"}, timeout=10).payload
    assert str(link["id"]) not in {str(row["pk"]) for row in rows["data"]["all_models"]}


class AdminSession:
    """The Django admin, driven as a person does it in a browser: a login form, then a delete confirmation."""

    def __init__(self, url):
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _form(self, path, fields):
        page = self.opener.open(f"{self.url}{path}", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers={"Referer": f"{self.url}{path}"})
        with self.opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()

    def login(self, username, password):
        status, page = self._form("/admin/login/?next=/admin/", {"username": username, "password": password})
        assert status == 200 and "Log out" in page, page[:500]

    def delete(self, app, model, pk):
        status, page = self._form(f"/admin/{app}/{model}/{pk}/delete/", {"post": "yes"})
        assert status == 200 and "deleted successfully" in page, page[:500]
