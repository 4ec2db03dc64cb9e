"""Idempotency-Key at the gateway: a client retries a mutation it was told failed, and nothing is made twice.

The recipe book on RabbitMQ and PostgreSQL; the ingredient worker is paused (SIGSTOP) to make a try time out.
"""
import os
import signal
import uuid

from .conftest import graphql

CREATE = "mutation($n: String!) { createIngredient(name: $n) { ingredient { id name } } }"
COUNT = "query($n: String) { ingredient(name: $n) { pk } }"


def create(url, name, key=None):
    return graphql(url, CREATE, {"n": name}, headers={"Idempotency-Key": key} if key is not None else None)


def rows_named(url, name):
    status, body = graphql(url, COUNT, {"n": name})
    assert status == 200 and "errors" not in body, body
    return len(body["data"]["ingredient"])


def test_the_same_key_gives_the_same_answer_and_one_row(recipe_book):
    url, key = recipe_book["url"], str(uuid.uuid4())
    first, again = create(url, "saffron", key), create(url, "saffron", key)
    assert first == again and "errors" not in first[1], (first, again)
    assert rows_named(url, "saffron") == 1
    # another key is another mutation: ingredient names are unique, so it is refused, not answered again
    status, other = create(url, "saffron", str(uuid.uuid4()))
    assert other["errors"][0]["extensions"]["code"] == "invalid", other
    assert rows_named(url, "saffron") == 1


def test_a_retry_after_a_timeout_tells_what_became_of_the_first_try(recipe_book):
    url, key, name = recipe_book["url"], str(uuid.uuid4()), f"paused-{uuid.uuid4().hex[:6]}"
    worker = recipe_book["ingredient"].pid
    os.kill(worker, signal.SIGSTOP)
    try:
        status, body = create(url, name, key)  # the gateway's budget here is 2 s
        assert body["errors"][0]["extensions"]["code"] == "service_unavailable", body
    finally:
        os.kill(worker, signal.SIGCONT)
    # the same key: the first try's fate (it arrived past its deadline: refused, not applied)
    status, body = create(url, name, key)
    assert body["errors"][0]["extensions"]["code"] == "deadline_exceeded", body
    assert rows_named(url, name) == 0
    status, body = create(url, name, str(uuid.uuid4()))  # so a new key makes it
    assert "errors" not in body, body
    assert rows_named(url, name) == 1


def test_a_key_that_is_not_printable_text_is_refused(recipe_book):
    for key in ("x" * 256, "tab\there"):
        status, body = create(recipe_book["url"], "pepper", key)
        assert body["errors"][0]["extensions"]["code"] == "invalid_idempotency_key", body
