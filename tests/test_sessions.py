"""Issue 14: sessions end with their user, rotate atomically, detect reuse, and end after a fixed life.

The real cloud on RabbitMQ and PostgreSQL; this module's gateway registers quietly (registerUser
answers the same whether or not the email is taken, and opens no session: users log in next),
and its sessions live 12 s at most however often they are refreshed.
"""
import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from .conftest import REGISTER, bearer, graphql

MAX_LIFETIME = 12
GATEWAY_ENV = {"NAUTILUS_QUIET_REGISTRATION": "1", "NAUTILUS_SESSION_MAX_LIFETIME": str(MAX_LIFETIME),
               "NAUTILUS_ACCESS_TOKEN_LIFETIME": "60", "NAUTILUS_LOGIN_ATTEMPTS_PER_ADDRESS": "1000"}
PASSWORD = "correct horse battery"
LOGIN = """mutation($email: String!, $password: String!) {
  loginUser(email: $email, password: $password) { user { id email } sessionToken refreshToken } }"""
REFRESH = "mutation($t: String!) { refreshSession(refreshToken: $t) { sessionToken refreshToken } }"
ME = "{ user { email } }"


def error_of(body):
    assert body.get("errors"), body
    return body["errors"][0]["message"], body["errors"][0].get("extensions", {}).get("code")


def login(url, email):
    status, body = graphql(url, LOGIN, {"email": email, "password": PASSWORD})
    assert status == 200 and "errors" not in body, body
    return body["data"]["loginUser"]


def account(url, email):
    """A user registered quietly, then logged in."""
    assert graphql(url, REGISTER, {"email": email, "password": PASSWORD})[1]["data"]["registerUser"] == {
        "user": None, "sessionToken": None, "refreshToken": None}
    return login(url, email)


def refresh(url, token):
    return graphql(url, REFRESH, {"t": token})[1]


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def gateway_sql(recipe_book, statement, *params):
    with psycopg.connect(recipe_book["gateway"].env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(statement, params)


def test_registration_says_nothing_about_who_is_registered(recipe_book):
    url = recipe_book["url"]
    first = graphql(url, REGISTER, {"email": "Quiet@Example.com", "password": PASSWORD})[1]
    again = graphql(url, REGISTER, {"email": "quiet@example.COM", "password": "another good passphrase"})[1]
    assert first == again == {"data": {"registerUser": {"user": None, "sessionToken": None, "refreshToken": None}}}
    # one account, whatever the case: its address as kept is lower-case, and any spelling logs in
    session = login(url, "QUIET@example.com")
    assert session["user"]["email"] == "quiet@example.com"
    assert error_of(graphql(url, LOGIN, {"email": "quiet@example.com", "password": "another good passphrase"})[1])[1] \
        == "invalid_credentials"
    # nor can an update make a second spelling
    other = account(url, "other@example.com")
    update = 'mutation($id: ID!, $e: String) { updateUser(id: $id, email: $e) { user { email } } }'
    body = graphql(url, update, {"id": other["user"]["id"], "e": "QUIET@EXAMPLE.COM"}, headers=bearer(other))[1]
    assert "already exists" in error_of(body)[0]


def test_an_inactive_users_tokens_are_refused(recipe_book):
    url = recipe_book["url"]
    session = account(url, "inactive@example.com")
    assert graphql(url, ME, headers=bearer(session))[1]["data"]["user"]
    gateway_sql(recipe_book, "UPDATE gateway_credential SET is_active = false WHERE user_id = %s",
                session["user"]["id"])
    assert error_of(graphql(url, ME, headers=bearer(session))[1]) == (
        "This account is no longer active. Log in again.", "invalid_token")
    assert error_of(refresh(url, session["refreshToken"]))[1] == "invalid_token"
    assert error_of(graphql(url, LOGIN, {"email": "inactive@example.com", "password": PASSWORD})[1])[1] \
        == "invalid_credentials"


def test_a_deleted_users_tokens_are_refused(recipe_book, bus):
    url = recipe_book["url"]
    # deleted through the gateway: refused at once
    session = account(url, "leaving@example.com")
    body = graphql(url, 'mutation($id: ID!) { deleteUser(id: $id) { id } }', {"id": session["user"]["id"]},
                   headers=bearer(session))[1]
    assert "errors" not in body, body
    assert error_of(graphql(url, ME, headers=bearer(session))[1])[1] == "invalid_token"
    assert error_of(refresh(url, session["refreshToken"]))[1] == "invalid_token"
    # deleted on the bus (the gateway hears delete.user.success)
    session = account(url, "deleted-on-the-bus@example.com")
    bus.ask("delete.user.pending", {"id": session["user"]["id"]}, timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "errors" not in graphql(url, ME, headers=bearer(session))[1]:
        time.sleep(0.2)
    assert error_of(graphql(url, ME, headers=bearer(session))[1])[1] == "invalid_token"
    assert error_of(refresh(url, session["refreshToken"]))[1] == "invalid_token"


def test_a_user_deleted_behind_the_gateways_back_cannot_refresh(recipe_book):
    url = recipe_book["url"]
    session = account(url, "erased@example.com")
    with psycopg.connect(recipe_book["user"].env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("DELETE FROM users_user WHERE id = %s", (int(session["user"]["id"]),))  # e.g. in its admin
    assert error_of(refresh(url, session["refreshToken"])) == ("This account is no longer active. Log in again.",
                                                               "invalid_token")
    assert error_of(graphql(url, ME, headers=bearer(session))[1])[1] == "invalid_token"


def test_exactly_one_of_concurrent_refreshes_wins_and_reuse_ends_the_session(recipe_book):
    url = recipe_book["url"]
    for round_ in range(5):
        session = account(url, f"racer-{round_}@example.com")
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(lambda _: refresh(url, session["refreshToken"]), range(10)))
        winners = [a["data"]["refreshSession"] for a in answers if "errors" not in a]
        assert len(winners) == 1, answers
        assert all(error_of(a)[1] == "invalid_token" for a in answers if "errors" in a)
        # the losers were replays of a used token: the whole session (token family) is revoked
        assert error_of(refresh(url, winners[0]["refreshToken"]))[1] == "invalid_token"
        assert error_of(graphql(url, ME, headers=bearer(winners[0]))[1]) == (
            "This session was logged out. Log in again.", "invalid_token")
        assert error_of(graphql(url, ME, headers=bearer(session))[1])[1] == "invalid_token"
        assert graphql(url, ME, headers=bearer(login(url, f"racer-{round_}@example.com")))[1]["data"]["user"]


def test_a_replayed_refresh_token_ends_the_session(recipe_book):
    url = recipe_book["url"]
    stolen = account(url, "replayed@example.com")
    rotated = refresh(url, stolen["refreshToken"])["data"]["refreshSession"]
    assert graphql(url, ME, headers=bearer(rotated))[1]["data"]["user"]
    message, code = error_of(refresh(url, stolen["refreshToken"]))
    assert code == "invalid_token" and "used before" in message
    assert error_of(refresh(url, rotated["refreshToken"]))[1] == "invalid_token"
    assert error_of(graphql(url, ME, headers=bearer(rotated))[1])[1] == "invalid_token"


def test_rotation_does_not_extend_a_session(recipe_book):
    url = recipe_book["url"]
    session = account(url, "long-lived@example.com")
    began = claims(session["refreshToken"])["auth_time"]
    tokens = session
    while time.time() < began + MAX_LIFETIME - 2:
        tokens = refresh(url, tokens["refreshToken"])["data"]["refreshSession"]
        for token in (tokens["refreshToken"], tokens["sessionToken"]):
            assert claims(token)["auth_time"] == began and claims(token)["exp"] <= began + MAX_LIFETIME
        time.sleep(1)
    time.sleep(max(0.0, began + MAX_LIFETIME + 1.5 - time.time()))
    assert error_of(refresh(url, tokens["refreshToken"]))[1] == "invalid_token"
    assert error_of(graphql(url, ME, headers=bearer(tokens))[1])[1] == "invalid_token"
