"""Issue 14: a service's own /graphql is internal: staff (a Django session) or the internal token; /health is open.

In process, with Django's test client on the recipe service (tests/settings.py); over HTTP in
test_runservice_http_cli.py.
"""
import pytest

from nautilus_core.internal import HEADER, derive_internal_token

QUERY = {"query": "{ all_models { name } }"}


@pytest.fixture
def recipe(db):
    from examples.recipe_book.recipes.models import Recipe

    return Recipe.objects.create(name="inside only")


def test_anonymous_callers_are_refused(client, recipe):
    response = client.post("/graphql", QUERY, content_type="application/json")
    assert response.status_code == 403 and b"inside only" not in response.content
    assert client.get("/health").status_code == 200


def test_staff_signed_in_to_the_admin_may_use_it(admin_client, recipe):
    response = admin_client.post("/graphql", QUERY, content_type="application/json")
    assert response.status_code == 200 and response.json() == {"data": {"all_models": [{"name": "inside only"}]}}


def test_signed_in_non_staff_users_are_refused(client, recipe, django_user_model):
    client.force_login(django_user_model.objects.create_user("visitor", password="x"))
    assert client.post("/graphql", QUERY, content_type="application/json").status_code == 403


def test_the_internal_token_is_derived_from_the_key_or_set(client, recipe, settings):
    derived = {HEADER: derive_internal_token(settings.SECRET_KEY)}
    assert client.post("/graphql", QUERY, content_type="application/json", headers=derived).status_code == 200
    settings.NAUTILUS = {**settings.NAUTILUS, "INTERNAL_TOKEN": "a token of its own"}
    assert client.post("/graphql", QUERY, content_type="application/json", headers=derived).status_code == 403
    assert client.post("/graphql", QUERY, content_type="application/json",
                       headers={HEADER: "a token of its own"}).status_code == 200


def test_opened_on_purpose(client, recipe, settings):
    settings.NAUTILUS = {**settings.NAUTILUS, "OPEN_SERVICE_APIS": True}
    assert client.post("/graphql", QUERY, content_type="application/json").status_code == 200
