"""Automatic persisted queries (Apollo's APQ; issue 16, item 2) at the gateway's /graphql, by POST and GET,
and at a service's own: real services on RabbitMQ and PostgreSQL."""
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from nautilus_core.persisted import PersistedQueries

from .conftest import INTERNAL, graphql

GATEWAY_ENV = {"NAUTILUS_PERSISTED_QUERIES": "65536", "NAUTILUS_MAX_DOCUMENT_SIZE": "4000"}

QUERY = "query Named($name: String) { ingredient(name: $name) { name } }"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text, hash_=None):
    return {"persistedQuery": {"version": 1, "sha256Hash": hash_ or sha(text)}}


def post(url, body, headers=None):
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    return _send(request)


def get(url, params, headers=None):
    query = urllib.parse.urlencode({k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()})
    return _send(urllib.request.Request(f"{url}/graphql?{query}", headers={"Accept": "application/json",
                                                                           **(headers or {})}))


def _send(request):
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def not_found(status, body):
    return status == 200 and body == {"errors": [{"message": "PersistedQueryNotFound",
                                                  "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}


def test_the_store_keeps_within_its_bytes():
    store = PersistedQueries(10_000)
    for n in range(1_000):
        text = f"{{ recipe(name: \"{n}\") {{ name }} }}"
        store.put(sha(text), text)
    assert store.size <= 10_000 and 0 < len(store) < 1_000
    text = '{ recipe(name: "1999") { name } }'
    store.put(sha(text), text)
    assert store.get(sha(text)) == text and store.get(sha('{ recipe(name: "0") { name } }')) is None


def test_unknown_then_registered_then_by_hash_alone_by_post(recipe_book):
    url, variables = recipe_book["url"], {"name": "apq salt"}
    assert graphql(url, 'mutation { createIngredient(name: "apq salt") { ingredient { id } } }')[0] == 200
    assert not_found(*post(url, {"variables": variables, "extensions": persisted(QUERY)}))
    status, body = post(url, {"query": QUERY, "variables": variables, "extensions": persisted(QUERY)})
    assert status == 200 and body == {"data": {"ingredient": [{"name": "apq salt"}]}}
    status, body = post(url, {"variables": variables, "operationName": "Named", "extensions": persisted(QUERY)})
    assert status == 200 and body == {"data": {"ingredient": [{"name": "apq salt"}]}}
    # with the response type of GraphQL over HTTP, a refused request is a 400
    status, body = post(url, {"extensions": persisted(QUERY + " ")},
                        headers={"Accept": "application/graphql-response+json"})
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


def test_by_get_and_a_mutation_is_still_a_post(recipe_book):
    url = recipe_book["url"]
    text = '{ ingredient(name: "apq by get") { name } }'
    assert not_found(*get(url, {"extensions": persisted(text)}))
    status, body = get(url, {"query": text, "extensions": persisted(text)})
    assert status == 200 and body == {"data": {"ingredient": []}}
    status, body = get(url, {"extensions": persisted(text)})
    assert status == 200 and body == {"data": {"ingredient": []}}

    mutation = 'mutation { createIngredient(name: "apq by post") { ingredient { name } } }'
    assert post(url, {"query": mutation, "extensions": persisted(mutation)})[0] == 200
    status, body = get(url, {"extensions": persisted(mutation)})
    assert status == 405 and body["errors"][0]["extensions"]["code"] == "method_not_allowed"


def test_a_wrong_hash_is_refused_and_nothing_is_kept(recipe_book):
    url = recipe_book["url"]
    text = '{ ingredient(name: "apq wrong") { name } }'
    status, body = post(url, {"query": text, "extensions": persisted(text, sha("another document"))})
    assert status == 400 and body["errors"][0]["message"] == "provided sha does not match query"
    assert not_found(*post(url, {"extensions": persisted(text, sha("another document"))}))
    for extension in ({"persistedQuery": {"version": 2, "sha256Hash": sha(text)}},
                      {"persistedQuery": {"version": 1, "sha256Hash": "not hex"}}, {"persistedQuery": "x"}):
        status, body = post(url, {"query": text, "extensions": extension})
        assert status == 400 and body["errors"][0]["extensions"]["code"] == "invalid_request", body


def test_the_limits_apply_to_persisted_documents(recipe_book):
    url = recipe_book["url"]
    oversize = "{ ingredient { name } }" + " " * 4000  # over NAUTILUS_MAX_DOCUMENT_SIZE here
    status, body = post(url, {"query": oversize, "extensions": persisted(oversize)})
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "document_too_large"
    assert not_found(*post(url, {"extensions": persisted(oversize)}))  # refused, so never kept
    invalid = "{ ingredient { nothing } }"
    status, body = post(url, {"query": invalid, "extensions": persisted(invalid)})
    assert status == 200 and "data" not in body
    assert not_found(*post(url, {"extensions": persisted(invalid)}))
    deep = "{ ingredient { recipes { ingredients { recipes { ingredients { recipes { ingredients { recipes { " \
           "ingredients { recipes { ingredients { recipes { ingredients { recipes { ingredients { recipes { " \
           "name } } } } } } } } } } } } } } } } }"
    status, body = post(url, {"query": deep, "extensions": persisted(deep)})
    assert body["errors"][0]["extensions"]["code"] == "query_too_deep"
    assert not_found(*post(url, {"extensions": persisted(deep)}))


@pytest.fixture(scope="module")
def recipe_http(cloud):
    return cloud.start("examples.recipe_book.recipes.settings", http=True)


def test_a_services_own_graphql_takes_persisted_queries(recipe_http):
    text = "{ all_models(first: 1) { pk } }"
    assert not_found(*post(recipe_http.url, {"extensions": persisted(text)}, headers=INTERNAL))
    assert post(recipe_http.url, {"query": text, "extensions": persisted(text)}, headers=INTERNAL)[0] == 200
    status, body = post(recipe_http.url, {"extensions": persisted(text)}, headers=INTERNAL)
    assert status == 200 and "all_models" in body["data"]
