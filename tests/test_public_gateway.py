"""The public gateway (and a service's own /graphql) against hostile clients, on the real recipe book.

Every attack of issue 13 with its bound: time, the gateway's resident memory, another client's
latency meanwhile. Then GraphQL over HTTP at every layer of a request (body bytes, content type,
JSON, document, variables, operationName, extensions), the graphql-http audits (npm package,
installed from tests/graphql_http/package-lock.json), and the committed SDL of the gateway.
"""
import http.client
import json
import os
import shutil
import statistics
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from graphql import build_client_schema, get_introspection_query, lexicographic_sort_schema, print_schema
from hypothesis import HealthCheck, given, settings, strategies as st

from .conftest import RECIPES, graphql

AUDIT_DIR = Path(__file__).parent / "graphql_http"
SDL = Path(__file__).parent.parent / "examples" / "recipe_book" / "gateway" / "schema.graphql"
GRAPHQL_RESPONSE = "application/graphql-response+json"

CREATE_INGREDIENT = "mutation($name: String!) { createIngredient(name: $name) { ingredient { id } } }"
CONNECT = "mutation($r: ID!, $i: ID!) { createIngredients(recipe: $r, ingredient: $i) { ingredients { id } } }"
CREATE_RECIPE = "mutation($name: String!) { createRecipe(name: $name) { recipe { id } } }"
# issue 13: 130 bytes, 8 levels, took the gateway to 4.4 GB and ~2 minutes
DEPTH_ATTACK = ("{ recipe { ingredients { recipes { ingredients { recipes { ingredients { recipes { ingredients "
                "{ name } } } } } } } } }")


def request(url, method="POST", path="/graphql", body=b"", headers=None, chunked=False):
    """One raw HTTP request; ``(status, headers, body bytes)``."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, path, body=body if not chunked else iter([body]), headers=headers or {},
                           encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def post_json(url, params, accept=None, **kwargs):
    headers = {"Content-Type": "application/json", **({"Accept": accept} if accept else {})}
    status, headers, body = request(url, body=json.dumps(params).encode(), headers=headers, **kwargs)
    return status, headers, json.loads(body)


def codes(body):
    return [error.get("extensions", {}).get("code") for error in body.get("errors", ())]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def service_url(cloud, recipe_book):
    """The recipe service's own HTTP API (runservice), on the recipe book's database and queue, opened on
    purpose (it is internal by default) so that it answers GraphQL over HTTP to anyone, as the audits ask."""
    env = {name: recipe_book["recipe"].env[name] for name in ("NAUTILUS_BROKER_URL", "DATABASE_URL",
                                                               "NAUTILUS_SECRET_KEY")}
    env["NAUTILUS_OPEN_SERVICE_APIS"] = "1"
    return cloud.start(RECIPES, http=True, env=env).url


@pytest.fixture(scope="module")
def dishes(recipe_book):
    """Five recipes, each with the same five ingredients: every level of the depth attack is 5 wide."""
    from .conftest import bearer, register

    url = recipe_book["url"]
    cook = bearer(register(url, "hostile-cook@example.com"))
    ingredients = [graphql(url, CREATE_INGREDIENT, {"name": f"spice {n}"})[1]["data"]["createIngredient"]
                   ["ingredient"]["id"] for n in range(5)]
    for n in range(5):
        recipe = graphql(url, CREATE_RECIPE, {"name": f"curry {n}"}, headers=cook)[1]["data"]["createRecipe"]
        for ingredient in ingredients:
            status, body = graphql(url, CONNECT, {"r": recipe["recipe"]["id"], "i": ingredient}, headers=cook)
            assert "errors" not in body, body
    return url


# -- the attacks of issue 13, each with its bound ----------------------------------------------------------------------


def test_the_depth_attack_is_refused_at_once(dishes):
    started = time.monotonic()
    status, _, body = post_json(dishes, {"query": DEPTH_ATTACK})
    elapsed = time.monotonic() - started
    assert status == 200 and "data" not in body and codes(body) == ["query_too_complex"], body
    assert body["errors"][0]["extensions"]["limit"] == 50000
    assert elapsed < 1.0, f"{elapsed:.2f}s"
    # with first at every level it is small enough to run: 5 wide, 8 deep, paged to 2
    paged = DEPTH_ATTACK.replace("ingredients {", "ingredients(first: 2) {").replace("recipes {", "recipes(first: 2) {")
    status, _, body = post_json(dishes, {"query": paged.replace("recipe {", "recipe(first: 2) {")})
    assert status == 200 and "errors" not in body, body


def test_aliases_are_refused_before_any_ask(recipe_book):
    url = recipe_book["url"]
    for aliases, code in ((5000, "document_too_large"), (600, "too_many_fields"), (51, "too_many_asks")):
        query = "{ " + " ".join(f"a{n}: recipe(first: 1) {{ pk }}" for n in range(aliases)) + " }"
        if code == "too_many_fields":
            query = "{ " + " ".join(f"a{n}: _services" for n in range(aliases)) + " }"
        started = time.monotonic()
        status, _, body = post_json(url, {"query": query}, accept=GRAPHQL_RESPONSE)
        assert time.monotonic() - started < 1.0
        assert status == 400 and codes(body) == [code] and "data" not in body, body
    status, _, body = post_json(url, {"query": "{ " + " ".join(f"a{n}: recipe(first: 1) {{ pk }}" for n in range(50))
                                      + " }"})
    assert status == 200 and "errors" not in body, body


def test_fragment_bombs_and_deep_documents_are_refused_at_once(recipe_book):
    laughs = "query { recipe { ...F20 } } fragment F0 on Recipe { name } " + " ".join(
        f"fragment F{i} on Recipe {{ ...F{i - 1} ... on Recipe {{ a{i}: name ...F{i - 1} }} }}" for i in range(1, 21))
    deep = "{ " + "recipe { ingredients { " * 300 + "name" + " }" * 600 + " }"
    for query in (laughs, deep, "{" * 20000, "query { recipe { ...A } } fragment A on Recipe { ...A }"):
        started = time.monotonic()
        status, _, body = post_json(recipe_book["url"], {"query": query}, accept=GRAPHQL_RESPONSE)
        assert time.monotonic() - started < 1.0
        assert status == 400 and body["errors"] and "data" not in body


def _status_of_partial_request(url, head, body_start):
    """Send a request's head and only the start of its body; the status the server answers with meanwhile."""
    import socket

    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + body_start)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_bodies_over_the_limit_are_413_before_they_are_read(recipe_book, service_url):
    head = b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    chunk = b'{"query": "{ __typename }", "variables": {"x": "' + b"y" * 1_100_000
    for url in (recipe_book["url"], service_url):
        # declared too large: answered before a byte of the body is sent
        status, answer = _status_of_partial_request(url, head + b"Content-Length: 3000000\r\n\r\n", b"")
        assert status == 413 and b"request_too_large" in answer
        # chunked: answered once the first 1.1 MB arrived, the rest never sent
        status, _ = _status_of_partial_request(url, head + b"Transfer-Encoding: chunked\r\n\r\n",
                                               b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert status == 413
        for query in ("{ __typename }" + " " * 40000, "#" * 40000):  # a document over MAX_DOCUMENT_SIZE
            status, _, body = post_json(url, {"query": query}, accept=GRAPHQL_RESPONSE)
            assert status == 400 and codes(body) == ["document_too_large"]


def _near_limit_document(n, valid=True):
    """About 32,000 characters (the limit is 32,768), 440 fields; distinct per n."""
    aliases = " ".join(f"alias_{n:03d}_{i:03d}_{'x' * 47}: _services" for i in range(440))
    return "{ " + aliases + (" }" if valid else " } }")


def test_near_limit_documents_leave_memory_bounded(recipe_book):
    """50 distinct valid (cached, within DOCUMENT_CACHE_SIZE) and 50 invalid (never cached) documents."""
    url, pid = recipe_book["url"], recipe_book["gateway"].pid
    post_json(url, {"query": _near_limit_document(999)})  # warm up: the first large document grows the heap once
    before = rss_kib(pid)
    for n in range(50):
        for valid in (True, False):
            document = _near_limit_document(n, valid)
            assert 31_000 < len(document) < 32_768
            status, _, body = post_json(url, {"query": document}, accept=GRAPHQL_RESPONSE)
            assert status == (200 if valid else 400), body
    grown = (rss_kib(pid) - before) / 1024
    print(f"gateway VmRSS grew {grown:.1f} MiB over 100 near-limit documents")
    assert grown < 64, f"{grown:.1f} MiB"


ATTACKER = """
import json, sys, threading, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
def post(query):
    request = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=60).read()
    except OSError:
        pass
def attack(offset):
    n, end = offset, time.monotonic() + seconds
    while time.monotonic() < end:
        n += 4
        aliases = " ".join(f"alias_{n:05d}_{i:03d}_{'x' * 45}: _services" for i in range(440))
        post("{ " + aliases + " }" if n % 3 else DEPTH_ATTACK)
threads = [threading.Thread(target=attack, args=(k,)) for k in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_other_clients_are_served_while_hostile_requests_run(recipe_book):
    """Four clients (in another process) send distinct near-limit documents, parsed and validated each
    time, and the depth attack, non-stop; meanwhile another client's ``{ _services }`` is timed."""
    import sys

    url = recipe_book["url"]
    attacker = subprocess.Popen([sys.executable, "-c", f"DEPTH_ATTACK = {DEPTH_ATTACK!r}\n{ATTACKER}", url, "6"])
    latencies = []
    try:
        time.sleep(1)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            started = time.monotonic()
            status, _, body = post_json(url, {"query": "{ _services }"})
            latencies.append(time.monotonic() - started)
            assert status == 200 and "errors" not in body
            time.sleep(0.02)
    finally:
        attacker.wait(60)
    p50, worst = statistics.median(latencies), max(latencies)
    print(f"another client's latency under attack: p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms "
          f"({len(latencies)} requests)")
    # the goal is < 100 ms; the bound leaves room for a loaded 2-core machine (the figures are in the output)
    assert p50 < 0.25 and worst < 1.0, (p50, worst)


# -- GraphQL over HTTP at every layer ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["gateway", "service"])
def endpoint(request, recipe_book, service_url):
    return recipe_book["url"] if request.param == "gateway" else service_url


def test_bad_bytes_and_content_types_are_clean_4xx(endpoint):
    for body, content_type, status in ((b"\xff\xfe{", "application/graphql", 400),
                                       (b'{"query": "\xff"}', "application/json", 400),
                                       (b"{nope", "application/json", 400), (b"", "application/json", 400),
                                       (b"[1]", "application/json", 400),
                                       (b"{ __typename }", "text/plain", 415), (b"{ __typename }", None, 415)):
        got, headers, answer = request(endpoint, body=body, headers={"Content-Type": content_type} if content_type
                                       else {})
        assert got == status, (body, got, answer)
        assert json.loads(answer)["errors"][0]["message"]
    got, headers, answer = request(endpoint, body=b"{ __typename }", headers={"Content-Type": "application/graphql"})
    assert got == 200 and json.loads(answer) == {"data": {"__typename": "Query"}}


def test_parameters_of_the_wrong_type_are_400s_that_say_which(endpoint):
    for params, word in (({"query": "{ __typename }", "operationName": {"x": 1}}, "operationName"),
                         ({"query": "{ __typename }", "operationName": 7}, "operationName"),
                         ({"query": "{ __typename }", "variables": "{}"}, "variables"),
                         ({"query": "{ __typename }", "variables": [1]}, "variables"),
                         ({"query": "{ __typename }", "extensions": "x"}, "extensions"),
                         ({"query": 5}, "query"), ({"qeury": "{ __typename }"}, "query")):
        status, _, body = post_json(endpoint, params)
        assert status == 400 and word in body["errors"][0]["message"], body
        assert "{'x'" not in body["errors"][0]["message"]  # no Python repr


def test_status_codes_follow_the_media_type(endpoint):
    for query, variables in (("{", None), ("{ nope }", None), ("query($n: Int!) { __typename }", {"n": None})):
        status, headers, body = post_json(endpoint, {"query": query, "variables": variables}, accept=GRAPHQL_RESPONSE)
        assert status == 400 and headers["content-type"].startswith(GRAPHQL_RESPONSE) and "data" not in body
        status, headers, body = post_json(endpoint, {"query": query, "variables": variables})
        assert status == 200 and headers["content-type"].startswith("application/json") and "data" not in body
        assert body["errors"]
    # an execution error is a 200 with data either way (first and last together: refused by the service)
    query = f"{{ {root_field(endpoint)}(first: 1, last: 1) {{ name }} }}"
    status, headers, body = post_json(endpoint, {"query": query}, accept=GRAPHQL_RESPONSE)
    assert status == 200 and "data" in body and body["errors"], body


def root_field(url):
    """``recipe`` at the gateway, ``all_models`` at the recipe service."""
    fields = post_json(url, {"query": "{ __schema { queryType { fields { name } } } }"})[2]
    names = {field["name"] for field in fields["data"]["__schema"]["queryType"]["fields"]}
    return "recipe" if "recipe" in names else "all_models"


def test_get_is_for_queries_only(endpoint):
    status, _, body = request(endpoint, "GET", "/graphql?" + urllib.parse.urlencode({"query": "{ __typename }"}))
    assert status == 200 and json.loads(body) == {"data": {"__typename": "Query"}}
    for query in ("mutation { __typename }", "subscription { x }"):
        status, headers, _ = request(endpoint, "GET", "/graphql?" + urllib.parse.urlencode({"query": query}))
        assert status == 405 and "POST" in headers["allow"]
    status, _, _ = request(endpoint, "PUT", body=b"{}", headers={"Content-Type": "application/json"})
    assert status == 405


def test_allowed_hosts_apply_to_graphql_too(endpoint):
    status, _, _ = request(endpoint, body=b'{"query": "{ __typename }"}',
                           headers={"Content-Type": "application/json", "Host": "evil.example"})
    assert status == 400


def test_graphiql_still_opens_in_a_browser(endpoint):
    status, headers, body = request(endpoint, "GET", headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html") and b"graphiql" in body.lower()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=8)
documents = st.sampled_from([
    "{ __typename }", "query Q($a: Int) { __typename }", "{", "mutation { x }", "", "{ a b c }"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.one_of(documents, json_values), variables=json_values, operation_name=json_values,
       extensions=json_values, accept=st.sampled_from([None, "*/*", GRAPHQL_RESPONSE, "text/plain"]))
def test_generated_requests_never_fail_the_server(endpoint, query, variables, operation_name, extensions, accept):
    status, headers, body = post_json(endpoint, {"query": query, "variables": variables,
                                                 "operationName": operation_name, "extensions": extensions}, accept)
    assert status < 500 and ("errors" in body or "data" in body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "application/graphql",
                                                                   "application/json; charset=latin-1"]))
def test_generated_bytes_never_fail_the_server(endpoint, body, content_type):
    status, _, answer = request(endpoint, body=body, headers={"Content-Type": content_type})
    assert status < 500, answer


def _audit_tool():
    """node and the pinned graphql-http package (npm ci from the lock file when node_modules is missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("the GraphQL over HTTP audits need Node.js 18+ and npm on the PATH")
    if not (AUDIT_DIR / "node_modules" / "graphql-http").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=AUDIT_DIR, check=True, timeout=300,
                       capture_output=True)
    return node


def test_the_graphql_http_audits_pass_without_warnings(endpoint):
    node = _audit_tool()
    run = subprocess.run([node, "audit.mjs", f"{endpoint}/graphql"], cwd=AUDIT_DIR, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert len(results) > 50
    failed = [r for r in results if r["status"] != "ok"]
    assert failed == [], json.dumps(failed, indent=1)


# -- a schema clients can trust --------------------------------------------------------------------------------


def test_the_printed_schema_is_the_committed_one(recipe_book):
    """Regenerate with: NAUTILUS_WRITE_SCHEMA=1 ./dev test tests/test_public_gateway.py -k printed_schema"""
    status, _, body = post_json(recipe_book["url"], {"query": get_introspection_query(descriptions=True)})
    assert status == 200 and "errors" not in body
    schema = lexicographic_sort_schema(build_client_schema(body["data"]))
    printed = print_schema(schema) + "\n"
    for type_ in schema.type_map.values():
        if not type_.name.startswith("__") and type_.name not in ("String", "Int", "Float", "Boolean", "ID"):
            assert type_.description, type_.name
            for name, field in getattr(type_, "fields", {}).items():
                assert field.description, f"{type_.name}.{name}"
                for argument_name, argument in getattr(field, "args", {}).items():
                    assert argument.description, f"{type_.name}.{name}({argument_name})"
    recipe = schema.get_type("Recipe").fields
    assert str(recipe["name"].type) == "String!" and str(recipe["minutes"].type) == "Int"
    assert str(recipe["ingredients"].type) == "[Ingredient!]" and str(recipe["pk"].type) == "ID!"
    assert str(schema.get_type("Ingredients").fields["recipe"].type) == "ID!"
    assert str(schema.query_type.fields["_services"].type) == "[String!]!"
    if os.environ.get("NAUTILUS_WRITE_SCHEMA") == "1":
        SDL.write_text(printed)
    assert SDL.exists() and SDL.read_text() == printed, (
        f"the gateway's schema changed; if that is meant, regenerate {SDL.name} with: "
        "NAUTILUS_WRITE_SCHEMA=1 ./dev test tests/test_public_gateway.py -k printed_schema")


# -- last: it stops the ingredient worker ------------------------------------------------------------------------------


def test_a_client_that_goes_away_cancels_its_asks(recipe_book):
    """The ingredient worker is stopped, so its ask waits (up to NAUTILUS_ASK_TIMEOUT, 2 s here); the
    client hangs up after 0.5 s, and the gateway cancels the ask then rather than at the timeout."""
    import socket

    recipe_book["ingredient"].stop()
    gateway = recipe_book["gateway"]
    parts = urllib.parse.urlsplit(recipe_book["url"])
    body = b'{"query": "{ ingredient { name } }"}'
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.5)
    deadline = time.monotonic() + 1.2  # before the ask's own 2 s timeout
    while time.monotonic() < deadline and "a client went away" not in gateway.log():
        time.sleep(0.05)
    assert "a client went away: 1 unanswered ask(s) cancelled" in gateway.log(), gateway.log()[-2000:]
