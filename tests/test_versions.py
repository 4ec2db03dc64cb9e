"""API versions: declared versions, schema checks, two majors side by side, deprecations (issue 20).

The rolling deploy runs real workers and a gateway on RabbitMQ and PostgreSQL (``tests/versioned``:
recipe 1.0, 1.1, 1.2 and 2.0); the rest runs in process.
"""
import json
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone
from kombu import Queue

from examples.recipe_book.recipes.services import RecipeService
from gateway.registry import Snapshot, validate_summary
from gateway.schema import build_schema
from gateway.versions import Catalog, VersionNotServed
from nautilus_core import intake
from nautilus_core.actions import ANNOUNCE, Action, MalformedAction
from nautilus_core.brokers import connection as broker_connection
from nautilus_core.testing import dead_letters, manage
from nautilus_core.versions import check_service, parse_api_version, routing_key

from .conftest import graphql
from .test_heartbeat import wait

S10, S11, S12, S20 = (f"tests.versioned.settings_{v}" for v in ("1_0", "1_1", "1_2", "2_0"))
GATEWAY = "tests.versioned.settings_gateway"
BEAT = {"NAUTILUS_HEARTBEAT": "1"}

RECIPE_FIELDS = '{ __type(name: "Recipe") { fields(includeDeprecated: true) { name isDeprecated deprecationReason } } }'
CREATE = "mutation($name: String!) { createRecipe(name: $name) { recipe { id name } } }"


class RecipeV2(RecipeService):
    api_version = "2.0"


class Deprecating(RecipeService):
    api_version = "1.3"
    deprecations = {"minutes": "Use the 2.x API."}


# -- declared versions -------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("1.0", (1, 0)), ("2.13", (2, 13)), ("999.0", (999, 0))])
def test_a_version_is_major_dot_minor(text, expected):
    assert parse_api_version(text) == expected


@pytest.mark.parametrize("hostile", [
    "", "2", "v2", "2.x", "0.9", "1000.0", "01.0", "1.01", "1.0.0", " 1.0", "1.0\n", "١.٠", "1.0; drop table",
    "9" * 5000 + ".0", 2.0, 2, True, None, ["1", "0"], {"major": 1},
])
def test_an_announcement_with_a_hostile_api_version_is_refused_with_its_reason(hostile):
    summary = {"name": "recipe", "pk": "id", "fields": [{"name": "name", "type": "String"}], "mutations": [],
               "version": "x", "api_version": hostile}
    with pytest.raises(MalformedAction) as refused:
        validate_summary(summary)
    assert 'an api_version is "MAJOR.MINOR"' in str(refused.value)
    assert len(str(refused.value)) < 300  # a huge value is not echoed whole


@pytest.mark.parametrize("reason", ["", "   ", 42, "x" * 1001, "bell\x07"])
def test_an_announced_deprecation_reason_must_be_text(reason):
    field = {"name": "name", "type": "String", "deprecation_reason": reason}
    summary = {"name": "recipe", "pk": "id", "fields": [field], "mutations": [], "version": "x"}
    with pytest.raises(MalformedAction, match="deprecation_reason"):
        validate_summary(summary)


def test_the_summary_carries_the_declared_version():
    assert RecipeService().summarize()["api_version"] == "1.0"
    assert RecipeV2().summarize()["api_version"] == "2.0"
    assert RecipeService().summarize()["version"] != RecipeV2().summarize()["version"]


def test_a_bad_version_or_deprecation_fails_manage_py_check():
    class Bad(RecipeService):
        api_version = "two"
        deprecations = {}

    class Unknown(RecipeService):
        deprecations = {"minutez": "typo"}

    assert [e.id for e in check_service(Bad())] == ["nautilus.E040"]
    errors = check_service(Unknown())
    assert [e.id for e in errors] == ["nautilus.E041"] and "'minutez'" in errors[0].msg
    assert check_service(Deprecating()) == []


# -- routing -----------------------------------------------------------------------------------


def test_major_1_keeps_the_wire_format_and_a_new_major_has_a_queue_and_keys_of_its_own():
    old, new = RecipeService().queue(), RecipeV2().queue()
    assert old.name == "nautilus.recipe"
    assert {b.routing_key for b in old.bindings} >= {"create.recipe.pending", "read.recipe.pending"}
    assert new.name == "nautilus.recipe.v2"
    keys = {b.routing_key for b in new.bindings}
    assert keys >= {"create.recipe.pending.v2", "read.recipe.pending.v2", "delete.recipe.pending.v2", "roll_call"}
    assert not keys & {b.routing_key for b in old.bindings if b.routing_key != "roll_call"}
    assert routing_key("create.recipe.pending", 1) == "create.recipe.pending"
    assert routing_key("delete.recipe.success", 2) == "delete.recipe.success"  # events are heard by every major
    assert routing_key("init.service.pending", 2) == "init.service.pending"


def test_the_envelope_carries_a_major_only_beyond_1():
    assert "api_major" not in Action("create.recipe.pending", api_major=1).to_dict()
    envelope = Action("create.recipe.pending", api_major=2).to_dict()
    assert envelope["api_major"] == 2 and Action.from_dict(envelope).api_major == 2
    for bad in (0, 1000, "2", 2.0, True):
        with pytest.raises(MalformedAction, match="api_major"):
            Action.from_dict({**envelope, "api_major": bad})


@pytest.mark.parametrize("service, major", [(RecipeService, 2), (RecipeV2, None), (RecipeV2, 3)])
def test_a_replica_never_applies_an_action_meant_for_another_major(service, major):
    raw = Action("create.recipe.pending", {"name": "soup"}, api_major=major).to_dict()
    with pytest.raises(MalformedAction, match="meant for major") as refused:
        intake.read_action(raw, service())
    assert refused.value.layer == "envelope"


def test_a_replica_takes_its_own_major_and_every_event():
    assert intake.read_action(Action("create.recipe.pending", api_major=2).to_dict(), RecipeV2())[0].api_major == 2
    assert intake.read_action(Action("roll_call").to_dict(), RecipeV2())


# -- the gateway's paths -----------------------------------------------------------------------


def _row(version, minutes_ago=0, heartbeat=1, name="recipe"):
    summary = {"name": name, "pk": "id", "fields": [{"name": "name", "type": "String"}], "mutations": [],
               "version": f"{name}-{version}", "api_version": version, "heartbeat": heartbeat}
    return SimpleNamespace(name=name, summary=summary, announced_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_graphql_serves_the_newest_major_and_v1_the_old_one():
    catalog = Catalog.from_rows([_row("1.1"), _row("2.0"), _row("1.0", name="ingredient")],
                                timezone.now() - timedelta(minutes=5))
    assert catalog.view().models["recipe"]["api_version"] == "2.0"
    assert catalog.view(1).models["recipe"]["api_version"] == "1.1"
    assert catalog.view(2).models["ingredient"]["api_version"] == "1.0"  # its newest major up to 2
    with pytest.raises(VersionNotServed) as missing:
        catalog.view(3)
    assert missing.value.status == 404 and missing.value.error()["extensions"]["code"] == "version_not_served"
    assert "recipe 2.0, 1.1" in str(missing.value)


def test_a_major_whose_last_replica_departed_answers_which_versions_are_served():
    catalog = Catalog.from_rows([_row("1.1", minutes_ago=10), _row("2.0"), _row("1.0", name="ingredient")],
                                timezone.now() - timedelta(minutes=5))
    with pytest.raises(VersionNotServed) as retired:
        catalog.view(1)
    error = retired.value.error()
    assert retired.value.status == 410 and error["extensions"]["code"] == "version_retired"
    assert "the last replica of recipe 1.x stopped announcing itself" in error["message"]
    assert error["extensions"]["served"] == {"ingredient": ["1.0"], "recipe": ["2.0"]}
    assert catalog.view().models["recipe"]["api_version"] == "2.0"


def test_a_deprecated_field_is_deprecated_in_the_gateways_schema():
    summary = Deprecating().summarize()
    schema = build_schema(Snapshot(models={"recipe": summary}), SimpleNamespace(user_service=None, owners={}))
    fields = {f["name"]: f for f in schema.execute(RECIPE_FIELDS).data["__type"]["fields"]}
    assert fields["minutes"] == {"name": "minutes", "isDeprecated": True, "deprecationReason": "Use the 2.x API."}
    assert fields["name"]["isDeprecated"] is False
    args = schema.execute('{ __type(name: "Mutation") { fields { name args(includeDeprecated: true) '
                          '{ name isDeprecated } } } }').data["__type"]["fields"]
    update = {a["name"]: a["isDeprecated"] for a in next(f for f in args if f["name"] == "updateRecipe")["args"]}
    assert update["minutes"] is True and update["name"] is False


# -- manage.py schema --------------------------------------------------------------------------


def test_schema_print_writes_the_sdl(tmp_path):
    result = manage(S11, "schema", "print", env={"NAUTILUS_DEMO": "1", "NAUTILUS_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "type Recipe {" in result.stdout and "spicy: Boolean!" in result.stdout
    assert 'minutes: Int @deprecated(reason: "Gone in 2.0: read /v1/graphql until then.")' in result.stdout


def test_schema_check_against_a_file_lists_the_changes_and_fails_on_a_breaking_one(tmp_path):
    env = {"NAUTILUS_DEMO": "1", "NAUTILUS_VAR_DIR": str(tmp_path)}
    v11 = tmp_path / "recipe-1.1.graphql"
    manage(S11, "schema", "print", "--output", str(v11), env=env)
    dropped = manage(S12, "schema", "check", "--against", str(v11), env=env, check=False)
    assert dropped.returncode == 1, dropped.stdout + dropped.stderr
    assert f"recipe 1.2 against {v11}:" in dropped.stdout
    assert "  breaking: Recipe.minutes was removed." in dropped.stdout
    assert "breaking change(s)" in dropped.stderr and 'api_version = "2.0"' in dropped.stderr

    v10 = tmp_path / "recipe-1.0.graphql"
    manage(S10, "schema", "print", "--output", str(v10), env=env)
    added = manage(S11, "schema", "check", "--against", str(v10), env=env, check=False)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "  dangerous: " in added.stdout and "compatible: no breaking change" in added.stdout
    assert "breaking:" not in added.stdout

    (tmp_path / "junk.graphql").write_text("type {")
    junk = manage(S11, "schema", "check", "--against", str(tmp_path / "junk.graphql"), env=env, check=False)
    assert junk.returncode == 1 and "not a GraphQL schema" in junk.stderr


# -- a rolling deploy on RabbitMQ and PostgreSQL ----------------------------------------------


def ok(url, query, variables=None):
    status, body = graphql(url, query, variables)
    assert status == 200 and "errors" not in body, body
    return body["data"]


def recipe_fields(url):
    status, body = graphql(url, RECIPE_FIELDS)
    return {f["name"]: f for f in body["data"]["__type"]["fields"]} if status == 200 and body.get("data") else {}


def names(url):
    return sorted(row["name"] for row in ok(url, "{ recipe { name } }")["recipe"])


def test_a_rolling_deploy_then_a_new_major_beside_the_old(cloud, bus, broker_url, recorder):
    first_db, second_db = cloud.databases.create("versioned"), cloud.databases.create("versioned")
    v1_env = {**cloud.env(S10, first_db), **BEAT}
    v10 = cloud.start(S10, env=v1_env)
    with broker_connection(cloud.broker_url) as connection:  # what other modules' services left for a gateway
        try:
            Queue("nautilus.api", no_declare=True)(connection.channel()).purge()
        except connection.channel_errors:
            pass
    gateway = cloud.start(GATEWAY, http=True, env={**cloud.env(GATEWAY), **BEAT, "NAUTILUS_ASK_TIMEOUT": "5",
                                                     "NAUTILUS_DEPARTED_AFTER": "6"})
    url, v1 = gateway.url, f"{gateway.url}/v1"
    wait(lambda: "minutes" in recipe_fields(url))
    assert "spicy" not in recipe_fields(url)
    ok(url, CREATE, {"name": "Soup"})
    dead_letters(broker_url)  # only this test's from here on

    # 1.1 (spicy added, minutes deprecated) joins 1.0 on its queue and table: served
    v11 = cloud.start(S11, env=v1_env)
    wait(lambda: "spicy" in recipe_fields(url))
    assert recipe_fields(url)["minutes"]["deprecationReason"] == "Gone in 2.0: read /v1/graphql until then."
    time.sleep(2)  # 1.0 keeps announcing itself meanwhile: a heartbeat of major 1, not a step back
    assert "spicy" in recipe_fields(url) and not dead_letters(broker_url)
    v10.stop()
    assert ok(url, "{ recipe { name spicy minutes } }")["recipe"] == [{"name": "Soup", "spicy": False,
                                                                       "minutes": None}]

    # 1.2 drops minutes within major 1: refused, named, and 1.1 stays served
    summary = json.loads(manage(S12, "shell", "-c", "import json; from nautilus_core.service import get_service; "
                                "print(json.dumps(get_service().summarize()))", env=v1_env).stdout.splitlines()[-1])
    bus.publish(ANNOUNCE, summary)
    letter = wait(lambda: next((d for d in dead_letters(broker_url) if "recipe 1.2" in d.get("reason", "")), None))
    assert "announcement refused: recipe 1.2 breaks the schema served for recipe 1.x (1.1)" in letter["reason"]
    assert "Recipe.minutes was removed." in letter["reason"] and "announce it as 2.0" in letter["reason"]
    assert "breaking change to 1.1: Recipe.minutes was removed." in gateway.log()
    time.sleep(1.5)  # the registry is re-read at least every second
    assert "minutes" in recipe_fields(url)
    assert ok(url, "{ recipe { name minutes } }")["recipe"] == [{"name": "Soup", "minutes": None}]

    # the same check before deploy, against the running cloud
    cli_env = {**cloud.env(S12, first_db)}
    check = manage(S12, "schema", "check", env=cli_env, check=False)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "recipe 1.2 against recipe 1.1 (running):" in check.stdout
    assert "  breaking: Recipe.minutes was removed." in check.stdout
    check = manage(S11, "schema", "check", env=cli_env, check=False)
    assert check.returncode == 0 and "compatible: no breaking change" in check.stdout, check.stdout + check.stderr
    check = manage(S20, "schema", "check", env=cli_env, check=False)
    assert check.returncode == 0 and "no replica of recipe 2.x announced itself" in check.stdout, check.stdout

    # 2.0 drops it as a new major, on its own queue and database: /graphql serves it, /v1/graphql 1.1
    cloud.start(S20, workers=2, env={**cloud.env(S20, second_db), **BEAT})
    wait(lambda: "minutes" not in recipe_fields(url))
    assert "minutes" in recipe_fields(v1) and "spicy" in recipe_fields(url)
    for name in ("Stew", "Curry"):
        ok(url, CREATE, {"name": name})
    ok(v1, CREATE, {"name": "Pie"})
    # one Idempotency-Key, the same mutation at each major: an action per major, each applied once
    keyed, sent = {"Idempotency-Key": "order-42"}, recorder("create.recipe.pending", "create.recipe.pending.v2")
    created = [graphql(path, CREATE, {"name": "Keyed"}, headers=keyed) for path in (v1, v1, url, url)]

    def keyed_ids():
        found = [e["action_id"] for e in sent.drain(0.1) if e["payload"] == {"name": "Keyed"}]
        return found if len(found) >= 4 else None

    action_ids = wait(keyed_ids, timeout=10)
    assert action_ids[0] == action_ids[1] != action_ids[2] == action_ids[3], action_ids
    assert all(status == 200 and "errors" not in body for status, body in created), created
    ids = [body["data"]["createRecipe"]["recipe"]["id"] for _, body in created]
    assert ids[0] == ids[1] and ids[2] == ids[3]  # a retry at one major is answered from its record
    assert sorted(names(v1)) == ["Keyed", "Pie", "Soup"] and names(url) == ["Curry", "Keyed", "Stew"]
    for path in (v1, url):
        ok(path, "mutation($id: ID!) { deleteRecipe(id: $id) { id } }",
           {"id": ok(path, '{ recipe(name: "Keyed") { id } }')["recipe"][0]["id"]})
    reply = bus.ask("create.recipe.pending", {"name": "Tart"}, timeout=5, major=2)
    assert reply.action_type == "create.recipe.success"
    assert names(url) == ["Curry", "Stew", "Tart"]  # each write once, in its major's database only
    assert names(v1) == ["Pie", "Soup"]
    assert ok(v1, "{ recipe(name: \"Pie\") { minutes } }")["recipe"] == [{"minutes": None}]
    assert not [d for d in dead_letters(broker_url) if "meant for major" in d.get("reason", "")]

    # the last 1.x replica stops: /v1/graphql says what is still served, /graphql goes on
    v11.stop()

    def retired():
        status, body = graphql(v1, "{ recipe { name } }")
        return (status, body) if status == 410 else None

    status, body = wait(retired, timeout=30)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "version_retired"
    assert "API version 1 is no longer served: the last replica of recipe 1.x stopped announcing itself." \
        in error["message"]
    assert error["extensions"]["served"] == {"recipe": ["2.0"]} and "/v2/graphql" in error["message"]
    assert names(url) == ["Curry", "Stew", "Tart"]
    assert names(f"{url}/v2") == ["Curry", "Stew", "Tart"]
    status, body = graphql(f"{url}/v7", "{ recipe { name } }")
    assert status == 404 and body["errors"][0]["extensions"]["code"] == "version_not_served"
