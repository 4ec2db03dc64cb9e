"""Users at the gateway: register, login, JWT sessions, auth criteria, protected writes.

The real cloud (user, recipe, ingredient, connection services and a gateway) on RabbitMQ and
PostgreSQL; the gateway's session tokens live 3 s here.
"""
import time

import psycopg
import pytest

from .conftest import REGISTER, bearer, graphql, register

GATEWAY_SETTINGS = "tests.auth_gateway.settings"  # the recipe book's gateway + an async criterion
GATEWAY_ENV = {"NAUTILUS_LOGIN_ATTEMPTS_PER_ADDRESS": "25"}  # the last test reaches it

LOGIN = """
mutation Login($email: String!, $password: String!) {
  loginUser(email: $email, password: $password) { user { id email } sessionToken refreshToken }
}"""
REFRESH = "mutation($t: String!) { refreshSession(refreshToken: $t) { sessionToken refreshToken } }"
LOGOUT = "mutation($t: String!) { logoutUser(refreshToken: $t) { ok } }"
CREATE_RECIPE = 'mutation($n: String!) { createRecipe(name: $n) { recipe { id name } } }'
PASSWORD = "correct horse battery"


def error_of(body):
    assert body.get("errors"), body
    return body["errors"][0]["message"], body["errors"][0].get("extensions", {}).get("code")


def login(url, email, password=PASSWORD):
    return graphql(url, LOGIN, {"email": email, "password": password})[1]


def test_register_login_query_refresh_logout_cycle(recipe_book):
    url = recipe_book["url"]
    alice = register(url, "alice@example.com")
    bob = register(url, "bob@example.com")
    assert alice["user"]["email"] == "alice@example.com" and alice["sessionToken"] and alice["refreshToken"]

    logged_in = login(url, "alice@example.com")["data"]["loginUser"]
    assert logged_in["user"] == alice["user"]

    # auth criteria: a user reads only their own user row; without a session, none
    status, body = graphql(url, "{ user { email } }", headers=bearer(logged_in))
    assert body["data"] == {"user": [{"email": "alice@example.com"}]}
    assert graphql(url, "{ user { email } }")[1]["data"] == {"user": []}

    # owners: alice may change herself, not bob
    status, body = graphql(url, 'mutation($id: ID!) { updateUser(id: $id, first_name: "Al") { user { first_name } } }',
                           {"id": alice["user"]["id"]}, headers=bearer(logged_in))
    assert body["data"] == {"updateUser": {"user": {"first_name": "Al"}}}
    # bob's row is one alice cannot read: as if there were none (issue 14: not "forbidden")
    status, body = graphql(url, 'mutation($id: ID!) { deleteUser(id: $id) { id } }', {"id": bob["user"]["id"]},
                           headers=bearer(logged_in))
    assert error_of(body) == (f"There is no user with id '{bob['user']['id']}'.", "not_found")

    # refresh rotates: the new pair works, the old refresh token does not
    rotated = graphql(url, REFRESH, {"t": logged_in["refreshToken"]})[1]["data"]["refreshSession"]
    assert rotated["refreshToken"] != logged_in["refreshToken"]
    assert graphql(url, "{ user { email } }", headers=bearer(rotated))[1]["data"]["user"] == [
        {"email": "alice@example.com"}]

    # using the old refresh token again is a replay: it is refused and ends the session (test_sessions.py)
    assert "used before" in error_of(graphql(url, REFRESH, {"t": logged_in["refreshToken"]})[1])[0]
    assert error_of(graphql(url, "{ user { email } }", headers=bearer(rotated))[1])[1] == "invalid_token"

    # logout: the refresh token and the session's access tokens are refused from now on
    rotated = login(url, "alice@example.com")["data"]["loginUser"]
    assert graphql(url, LOGOUT, {"t": rotated["refreshToken"]})[1]["data"] == {"logoutUser": {"ok": True}}
    assert error_of(graphql(url, REFRESH, {"t": rotated["refreshToken"]})[1])[1] == "invalid_token"
    message, code = error_of(graphql(url, "{ user { email } }", headers=bearer(rotated))[1])
    assert (message, code) == ("This session was logged out. Log in again.", "invalid_token")


def test_session_tokens_expire(recipe_book):
    session = register(recipe_book["url"], "brief@example.com")
    assert graphql(recipe_book["url"], "{ user { email } }", headers=bearer(session))[1]["data"]["user"]
    time.sleep(3.5)
    status, body = graphql(recipe_book["url"], "{ user { email } }", headers=bearer(session))
    assert status == 200 and body["data"] is None
    message, code = error_of(body)
    assert code == "invalid_token" and "expired" in message


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer ", "Token abc", "Bearer a.b.c"])
def test_bad_tokens_are_graphql_errors(recipe_book, header):
    status, body = graphql(recipe_book["url"], "{ recipe { name } }", headers={"Authorization": header})
    assert status == 200 and body["data"] is None and error_of(body)[1] == "invalid_token"


def test_a_refresh_token_is_not_a_session_token(recipe_book):
    session = register(recipe_book["url"], "mixup@example.com")
    refresh_as_session = {"Authorization": f"Bearer {session['refreshToken']}"}
    body = graphql(recipe_book["url"], "{ recipe { name } }", headers=refresh_as_session)[1]
    assert "wrong type" in error_of(body)[0]


def test_writes_need_a_session_unless_public(recipe_book):
    url = recipe_book["url"]
    message, code = error_of(graphql(url, CREATE_RECIPE, {"n": "anonymous soup"})[1])
    assert code == "unauthenticated" and "Log in to call createRecipe" in message
    assert graphql(url, 'mutation { createIngredient(name: "public salt") { ingredient { name } } }')[1]["data"] == {
        "createIngredient": {"ingredient": {"name": "public salt"}}}
    # no way around registerUser: createUser is not exposed
    create_user = 'mutation { createUser(email: "x@y.z") { user { id } } }'
    assert "Cannot query field 'createUser'" in error_of(graphql(url, create_user)[1])[0]


def test_unknown_user_and_wrong_password_get_the_same_answer(recipe_book):
    url = recipe_book["url"]
    register(url, "carol@example.com")
    wrong_password = error_of(login(url, "carol@example.com", "not her password"))
    unknown_user = error_of(login(url, "nobody@example.com"))
    assert wrong_password == unknown_user == ("Invalid email or password.", "invalid_credentials")


def test_logins_are_throttled_per_account(recipe_book):
    url = recipe_book["url"]
    register(url, "dave@example.com")
    for _ in range(5):
        assert error_of(login(url, "dave@example.com", "guess"))[1] == "invalid_credentials"
    message, code = error_of(login(url, "dave@example.com"))  # even the right password, for now
    assert code == "throttled" and "for this account" in message
    register(url, "erin@example.com")  # another account is not held back
    assert login(url, "erin@example.com")["data"]["loginUser"]["sessionToken"]


def test_weak_password_or_taken_email_creates_nothing(recipe_book, bus):
    url = recipe_book["url"]
    message, code = error_of(graphql(url, REGISTER, {"email": "weak@example.com", "password": "123"})[1])
    assert code == "invalid_password" and "too short" in message
    register(url, "taken@example.com")
    message, code = error_of(graphql(url, REGISTER, {"email": "taken@example.com", "password": PASSWORD})[1])
    assert "already exists" in message
    emails = _user_emails(bus)
    assert "weak@example.com" not in emails and emails.count("taken@example.com") == 1


def test_a_failed_registration_leaves_no_orphan_user(recipe_book, bus):
    url = recipe_book["url"]
    register(url, "first@example.com")
    # make keeping the next user's credential fail: the next ids (a sequence may skip a few) are taken
    last_id = max(int(row["pk"]) for row in _users(bus))
    taken = [str(user_id) for user_id in range(last_id + 1, last_id + 20)]
    with psycopg.connect(recipe_book["gateway"].env["DATABASE_URL"], autocommit=True) as conn:
        for user_id in taken:
            conn.execute("INSERT INTO gateway_credential (user_id, password, is_active, is_staff, is_superuser) "
                         "VALUES (%s, '!', true, false, false)", (user_id,))
        try:
            message, code = error_of(graphql(url, REGISTER, {"email": "orphan@example.com", "password": PASSWORD})[1])
            assert code == "registration_failed"
            assert "orphan@example.com" not in _user_emails(bus)
        finally:
            conn.execute("DELETE FROM gateway_credential WHERE user_id = ANY(%s)", (taken,))


def test_the_password_never_travels_on_the_bus(recipe_book, recorder):
    everything = recorder("#")
    secret = "a very secret passphrase 7"
    register(recipe_book["url"], "private@example.com", password=secret)
    assert login(recipe_book["url"], "private@example.com", secret)["data"]["loginUser"]["sessionToken"]
    everything.drain(1.0)
    assert any("private@example.com" in body for body in everything.raw_bodies)  # the recorder saw the traffic
    assert not any(secret in body for body in everything.raw_bodies)


def test_async_auth_criteria_filter_top_level_and_nested_rows(recipe_book):
    url = recipe_book["url"]
    session = bearer(register(url, "chef@example.com"))
    salt = graphql(url, 'mutation { createIngredient(name: "secret salt") { ingredient { id } } }')[1]
    salt_id = salt["data"]["createIngredient"]["ingredient"]["id"]
    for name in ("secret stew", "open stew"):
        recipe_id = graphql(url, CREATE_RECIPE, {"n": name}, headers=session)[1]["data"]["createRecipe"]["recipe"]["id"]
        graphql(url, "mutation($r: ID!, $i: ID!) "
                     "{ createIngredients(recipe: $r, ingredient: $i) { ingredients { id } } }",
                {"r": recipe_id, "i": salt_id}, headers=session)
    query = '{ recipe(name_in: ["secret stew", "open stew"], order_by: ["name"]) { name } ' \
            'ingredient(name: "secret salt") { recipes(order_by: ["name"]) { name } } }'
    anonymous = graphql(url, query)[1]["data"]
    assert anonymous == {"recipe": [{"name": "open stew"}], "ingredient": [{"recipes": [{"name": "open stew"}]}]}
    signed_in = graphql(url, query, headers=session)[1]["data"]
    assert signed_in["recipe"] == [{"name": "open stew"}, {"name": "secret stew"}]
    assert signed_in["ingredient"] == [{"recipes": [{"name": "open stew"}, {"name": "secret stew"}]}]
    # with a Python criterion the gateway pages the rows it keeps: a page of visible rows, never a short one
    first = '{ recipe(name_in: ["secret stew", "open stew"], order_by: ["-name"], first: 1) { name } ' \
            'ingredient(name: "secret salt") { recipes(order_by: ["-name"], first: 1) { name } } }'
    assert graphql(url, first)[1]["data"] == {"recipe": [{"name": "open stew"}],
                                              "ingredient": [{"recipes": [{"name": "open stew"}]}]}
    assert graphql(url, first, headers=session)[1]["data"]["recipe"] == [{"name": "secret stew"}]


def test_logins_are_throttled_per_client_address(recipe_book):
    """Last in this module: it uses up the address's attempts (25 here; earlier tests used some)."""
    codes = [error_of(login(recipe_book["url"], f"stranger-{n}@example.com"))[1] for n in range(26)]
    assert codes[0] == "invalid_credentials" and codes[-1] == "throttled"
    message, _ = error_of(login(recipe_book["url"], "someone-else@example.com"))
    assert "for this address" in message


def _users(bus):
    reply = bus.ask("read.user.pending", {"query": "{ all_models { pk email } }"}, timeout=10)
    return reply.payload["data"]["all_models"]


def _user_emails(bus):
    return [row["email"] for row in _users(bus)]
