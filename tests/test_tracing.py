"""Trace context on every envelope, the services' records of what they handled, ``manage.py trace``,
and OpenTelemetry spans linked through the bus.

In process on the in-memory bus (the recipe service and a service that cascades), then end to end:
a recipe deleted through the gateway, on RabbitMQ and PostgreSQL, traced across every service.
"""
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.recipe_book.recipes.services import RecipeService
from nautilus.testing import MemoryBus
from nautilus_core import otel, tracing
from nautilus_core.actions import TRACE, Action
from nautilus_core.models import TracedAction
from nautilus_core.service import Service, on_action
from nautilus_core.testing import manage
from nautilus_core.timeline import render, timeline

from .conftest import CONNECTION, GATEWAY, PROJECT_DIR, RECIPES, SECRET_KEY, bearer, graphql, register

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Cascader(Service):
    """Emits one ``unlink.kept.pending`` per deleted recipe, as a connection's cascade does."""

    name = "cascader"

    @on_action("delete.recipe.success")
    def cascade(self, action):
        self.emit("unlink.kept.success", {"recipe": action.payload["id"]})


def trace_of(envelope):
    return tracing.parse_traceparent(envelope.get("traceparent"))[0]


@pytest.fixture
def memory(db):
    with MemoryBus(RecipeService(), Cascader()) as bus:
        yield bus


# -- trace context on every envelope ------------------------------------------------------------


def test_every_envelope_an_action_causes_carries_its_trace_and_cause(memory):
    created = memory.ask("create.recipe.pending", {"name": "soup"}).payload
    memory.publish(Action(action_type="delete.recipe.pending", payload={"id": created["id"]},
                          correlation_id=str(uuid.uuid4()), sender="test", traceparent=TRACEPARENT))
    memory.deliver()
    ask, = memory.of_type("delete.recipe.pending")
    outcome, = memory.of_type("delete.recipe.success")
    event, = memory.of_type("unlink.kept.success")
    assert {trace_of(e) for e in (ask, outcome, event)} == {TRACE_ID}
    assert "caused_by" not in ask  # sent by the test: no cause
    assert outcome["caused_by"] == ask["action_id"] and event["caused_by"] == outcome["action_id"]
    # each hop has a parent id of its own (the span that sent it)
    assert len({e["traceparent"][36:52] for e in (ask, outcome, event)}) == 3


def test_an_action_made_outside_any_trace_starts_one(memory):
    first, second = Action("create.recipe.pending"), Action("create.recipe.pending")
    assert tracing.parse_traceparent(first.traceparent) and first.caused_by is None
    assert trace_of(first.to_dict()) != trace_of(second.to_dict())


def test_a_request_continues_the_clients_trace_or_starts_one(client):
    response = client.get("/health/live", HTTP_TRACEPARENT=TRACEPARENT)
    assert response["traceresponse"].startswith(f"00-{TRACE_ID}-")
    for bad in ("", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff-" + TRACE_ID + "-00f067aa0ba902b7-01", "x" * 600):
        response = client.get("/health/live", HTTP_TRACEPARENT=bad)
        assert tracing.parse_traceparent(response["traceresponse"])[0] != TRACE_ID


HOSTILE = [
    None, 7, 1.5, True, [], ["00"], {"traceparent": TRACEPARENT}, "", " ", "\x00", TRACEPARENT + "\x00",
    TRACEPARENT.upper(), TRACEPARENT[:-1], TRACEPARENT + "-", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
    f"00-{TRACE_ID}-" + "0" * 16 + "-01", f"ff-{TRACE_ID}-00f067aa0ba902b7-01", f"0-{TRACE_ID}-00f067aa0ba902b7-01",
    f"00-{TRACE_ID}-00f067aa0ba902b7-0g", f"00_{TRACE_ID}_00f067aa0ba902b7_01", "00-" + "é" * 32 + "-x-01",
    TRACEPARENT * 20, "0" * 100_000, "💥" * 55,
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_traceparent_or_caused_by_is_replaced_never_refused(memory, value):
    memory.client.publish(Action(action_type="create.recipe.pending", payload={"name": "hostile"},
                                 correlation_id=str(uuid.uuid4()), sender="test", traceparent=value,
                                 caused_by=value))
    memory.deliver()
    assert memory.dead_letters == []
    outcome, = memory.of_type("create.recipe.success")
    assert tracing.parse_traceparent(outcome["traceparent"])[0] != TRACE_ID  # a new trace
    assert outcome["traceparent"] == tracing.read_traceparent(outcome["traceparent"])
    record, = TracedAction.objects.filter(action_type="create.recipe.pending")
    assert record.status == "success" and record.trace_id == trace_of(outcome)
    assert record.caused_by == (value if isinstance(value, str) and tracing.read_caused_by(value) else "")


@given(st.one_of(st.text(max_size=80), st.from_regex(r"[0-9a-fA-F-]{50,60}", fullmatch=True),
                 st.builds("{}-{}-{}-{}".format, *(st.from_regex(f"[0-9a-f]{{{n}}}", fullmatch=True)
                                                   for n in (2, 32, 16, 2)))))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_reading_a_traceparent_never_raises_and_gives_a_canonical_one(value):
    canonical = tracing.read_traceparent(value)
    assert canonical is None or (len(canonical) == tracing.TRACEPARENT_LENGTH
                                 and tracing.read_traceparent(canonical) == canonical)
    envelope = {"action_type": "create.recipe.pending", "payload": {}, "traceparent": value, "caused_by": value}
    action = Action.from_dict(envelope)
    assert action.traceparent == canonical
    assert action.caused_by in (None, value)


# -- what each service records ---------------------------------------------------------------


class Flaky(Service):
    name = "flaky"

    @on_action("try.flaky.pending", record=False)
    def attempt(self, action):
        raise ConnectionError("down")


def statuses(action_type):
    return list(TracedAction.objects.filter(action_type=action_type).order_by("pk").values_list("status", flat=True))


def test_each_handling_is_recorded_with_its_status(memory):
    memory.ask("create.recipe.pending", {"name": "soup"})
    memory.ask("create.recipe.pending", {"servings": "many"})
    assert statuses("create.recipe.pending") == ["success", "error"]
    late = Action(action_type="update.recipe.pending", payload={"id": 1}, correlation_id="c",
                  deadline=(datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat())
    memory.client.publish(late)
    memory.client.publish(Action(action_type="delete.recipe.pending", payload=["not", "an", "object"]))
    memory.deliver()
    assert statuses("update.recipe.pending") == ["expired"]
    assert statuses("delete.recipe.pending") == ["dead-lettered"]
    memory.attach(Flaky())
    with override_settings(NAUTILUS={"MAX_RETRIES": 1}):
        memory.ask("try.flaky.pending")
    assert statuses("try.flaky.pending") == ["retried", "dead-lettered"]
    assert list(TracedAction.objects.filter(action_type="try.flaky.pending").values_list("attempt", flat=True)) \
        == [1, 2]
    # the cloud's own chatter is not recorded
    memory.ask(TRACE, {"id": "x"})
    assert not TracedAction.objects.filter(action_type=TRACE).exists()


@pytest.mark.django_db(transaction=True)
def test_the_records_of_reads_are_kept_in_memory_until_a_trace_query_or_a_batch_saves_them():
    """Outside a test's transaction, as in a worker: a read's record costs no commit of its own."""
    with MemoryBus(RecipeService()) as memory:
        read = memory.ask("read.recipe.pending", {"query": "{ all_models { pk } }"})
        assert not TracedAction.objects.exists()  # kept, not saved
        found = memory.ask(TRACE, {"id": read.correlation_id}).payload["records"]
        assert [(r["action_type"], r["status"]) for r in found] == [("read.recipe.pending", "success")]
        memory.ask("read.recipe.pending", {"query": "{ all_models { pk } }"})
        tracing._kept[0].kept_at -= tracing.SAVE_EVERY  # a second later, the next record saves both
        memory.ask("read.recipe.pending", {"query": "{ nope }"})  # an error: saved at once, not kept
        memory.ask("read.recipe.pending", {"query": "{ all_models { pk } }"})
        assert statuses("read.recipe.pending") == ["success", "error", "success", "success"]
        assert not tracing._kept


def test_records_older_than_the_retention_are_pruned(memory):
    memory.ask("create.recipe.pending", {"name": "soup"})
    old = TracedAction.objects.get()
    TracedAction.objects.filter(pk=old.pk).update(received_at=datetime.now(timezone.utc) - timedelta(days=8))
    memory.ask("create.recipe.pending", {"name": "stew"})
    with override_settings(NAUTILUS={"TRACE_RETENTION": 7 * 86400}):
        assert tracing.prune(force=True) == 1
        assert tracing.prune() == 0  # at most once a minute, unless forced
    assert TracedAction.objects.count() == 1
    # pruned while recording, too, once the minute has passed
    TracedAction.objects.update(received_at=datetime.now(timezone.utc) - timedelta(seconds=120))
    tracing._last_pruned[0] = 0.0
    with override_settings(NAUTILUS={"TRACE_RETENTION": 60}):
        memory.ask("create.recipe.pending", {"name": "broth"})
    assert list(TracedAction.objects.values_list("status", flat=True)) == ["success"]
    with override_settings(NAUTILUS={"TRACE_RETENTION": 0}):  # 0: nothing recorded
        memory.ask("create.recipe.pending", {"name": "none"})
    assert TracedAction.objects.count() == 1


def test_the_trace_query_answers_what_the_service_recorded(memory):
    reply = memory.ask("create.recipe.pending", {"name": "soup"})
    found = memory.ask(TRACE, {"id": reply.correlation_id})
    assert found.payload["service"] == "recipe"
    record, = found.payload["records"]
    assert record["action_type"] == "create.recipe.pending" and record["outcome_id"] == reply.action_id
    assert [p["action_type"] for p in record["published"]] == ["create.recipe.success"]
    by_trace = memory.ask(TRACE, {"trace_ids": [record["trace_id"]]}).payload["records"]
    assert {r["service"] for r in by_trace} == {"recipe", "cascader"} or by_trace == [record]
    for hostile in ({"id": 5}, {"id": "x" * 300}, {"trace_ids": "abc"}, {"trace_ids": [1]}, {"trace_ids": ["a"] * 101}):
        assert memory.ask(TRACE, hostile).action_type == "trace.service.error"


def test_the_timeline_is_a_tree_of_causes():
    at = "2026-11-25T10:03:01.{:03d}000+00:00"
    records = [
        {"service": "recipe", "action_id": "a", "action_type": "delete.recipe.pending", "status": "success",
         "received_at": at.format(1), "duration_ms": 5.0, "trace_id": TRACE_ID, "caused_by": None,
         "sender": "api", "attempt": 1, "published": [{"action_id": "b", "action_type": "delete.recipe.success",
                                                         "sent_at": at.format(6)}]},
        {"service": "ingredients", "action_id": "b", "action_type": "delete.recipe.success", "status": "success",
         "received_at": at.format(7), "duration_ms": 3.0, "trace_id": TRACE_ID, "caused_by": "a",
         "sender": "recipe", "attempt": 1, "published": [{"action_id": "c", "action_type": "delete.ingredients.success",
                                                            "sent_at": at.format(9)}]},
    ]
    root, = timeline(records)
    assert (root["action_id"], root["children"][0]["action_id"], root["children"][0]["children"][0]["action_id"]) \
        == ("a", "b", "c")
    published = root["children"][0]["children"][0]
    assert published["service"] == "ingredients" and published["status"] == "success"
    lines = render([root]).splitlines()
    assert [line.index("delete.") for line in lines] == [14, 16, 18]


# -- OpenTelemetry ------------------------------------------------------------------------------


@pytest.fixture
def spans():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    otel.configure(exporter, batch=False)
    yield exporter
    otel.disable()


def test_without_configuration_nothing_makes_spans(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert not otel.enabled() and not otel.configured_by_environment()
    assert isinstance(otel.span("x"), type(otel.span("y")))  # a shared no-op context
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert otel.configured_by_environment()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not otel.configured_by_environment()


@pytest.mark.parametrize("settings_module, name", [(RECIPES, "recipe"), (CONNECTION, "ingredients"),
                                                    (GATEWAY, "api")])
def test_the_otel_variables_turn_on_the_sdk_and_the_instrumentation(settings_module, name):
    code = ("import django; django.setup()\n"
            "from django.conf import settings; from nautilus_core import otel\n"
            "from opentelemetry import trace\n"
            "print(otel.enabled(), settings.MIDDLEWARE[0].rsplit('.', 1)[-1],"
            " trace.get_tracer_provider().resource.attributes['service.name'])\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, "NAUTILUS_SECRET_KEY": SECRET_KEY,
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["True", "_DjangoMiddleware", name], done.stdout + done.stderr


def test_spans_of_handlers_and_transactions_link_through_the_bus(memory, spans):
    created = memory.ask("create.recipe.pending", {"name": "soup"}).payload
    spans.clear()
    with otel.span("request") as request:
        memory.publish(Action(action_type="delete.recipe.pending", payload={"id": created["id"]},
                              correlation_id="c", sender="test"))
    memory.deliver()
    by_name = {span.name: span for span in spans.get_finished_spans()}
    handler, transaction = by_name["delete.recipe.pending process"], by_name["delete.recipe.pending transaction"]
    cascade = by_name["delete.recipe.success process"]
    trace_id = request.get_span_context().trace_id
    assert {span.context.trace_id for span in (handler, transaction, cascade)} == {trace_id}
    assert handler.parent.span_id == request.get_span_context().span_id  # through the envelope
    assert transaction.parent.span_id == handler.context.span_id
    # the outcome was made in the handler's transaction: the cascade's span is its child
    assert cascade.parent.span_id == transaction.context.span_id
    assert handler.attributes["nautilus.service"] == "recipe"
    outcome, = memory.of_type("delete.recipe.success")
    assert outcome["traceparent"][:52] == f"00-{trace_id:032x}-{transaction.context.span_id:016x}"


def test_a_request_span_continues_the_clients_traceparent(client, spans):
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from django.test import Client

    DjangoInstrumentor().instrument()
    try:
        response = Client().get("/health/live", HTTP_TRACEPARENT=TRACEPARENT)
    finally:
        DjangoInstrumentor().uninstrument()
    server = [span for span in spans.get_finished_spans() if span.kind.name == "SERVER"]
    assert server and server[0].context.trace_id == int(TRACE_ID, 16)
    assert response["traceresponse"] == f"00-{TRACE_ID}-{server[0].context.span_id:016x}-01"


# -- end to end: a cascade through the gateway --------------------------------------------------

CREATE_RECIPE = "mutation($n: String!) { createRecipe(name: $n) { recipe { id } } }"
CREATE_INGREDIENT = "mutation($n: String!) { createIngredient(name: $n) { ingredient { id } } }"
CONNECT = "mutation($r: ID!, $i: ID!) { createIngredients(recipe: $r, ingredient: $i) { ingredients { id } } }"
DELETE = "mutation($id: ID!) { deleteRecipe(id: $id) { id } }"


def ok(url, query, variables, headers=None):
    status, body = graphql(url, query, variables, headers=headers)
    assert status == 200 and "errors" not in body, body
    return body["data"]


def test_the_gateway_request_has_a_span_of_its_own_without_djangos_middleware(rf, spans):
    """The gateway's /graphql runs without Django's middleware (gateway.asgi): TraceMiddleware makes its span."""
    import asyncio

    async def view(request):
        from django.http import HttpResponse

        return HttpResponse(Action("read.recipe.pending").traceparent)

    response = asyncio.run(tracing.TraceMiddleware(view)(rf.post("/graphql", HTTP_TRACEPARENT=TRACEPARENT)))
    server, = spans.get_finished_spans()
    assert server.name == "POST /graphql" and server.kind.name == "SERVER"
    assert server.context.trace_id == int(TRACE_ID, 16) and server.parent.span_id == 0x00f067aa0ba902b7
    assert response.content.decode()[:52] == f"00-{TRACE_ID}-{server.context.span_id:016x}"  # the ask's parent


def test_an_ask_span_is_continued_by_the_worker_it_reaches(recipe_book, bus, spans):
    reply = bus.ask("create.recipe.pending", {"name": "spanned"}, timeout=10)
    ask, = [span for span in spans.get_finished_spans() if span.name == "create.recipe.pending ask"]
    assert ask.kind.name == "CLIENT"
    assert reply.traceparent[3:35] == f"{ask.context.trace_id:032x}"  # the worker answered in the ask's trace


def trace_command(cloud, *args):
    env = {"NAUTILUS_BROKER_URL": cloud.broker_url, "NAUTILUS_SECRET_KEY": SECRET_KEY}
    return manage(RECIPES, "trace", *args, env=env, check=False)


def walk(entries, depth=0):
    for entry in entries:
        yield depth, entry
        yield from walk(entry["children"], depth + 1)


def test_a_cascade_through_the_gateway_is_traced_end_to_end(recipe_book, cloud, recorder):
    url = recipe_book["url"]
    cook = bearer(register(url, f"tracer-{uuid.uuid4().hex[:6]}@example.com"))
    recipe = ok(url, CREATE_RECIPE, {"n": "traced stew"}, cook)["createRecipe"]["recipe"]["id"]
    for name in ("leek", "bean"):
        ingredient = ok(url, CREATE_INGREDIENT, {"n": name})["createIngredient"]["ingredient"]["id"]
        ok(url, CONNECT, {"r": recipe, "i": ingredient}, cook)
    trace_id = uuid.uuid4().hex
    events = recorder("delete.#")
    ok(url, DELETE, {"id": recipe}, {**cook, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    events.wait_for(lambda e: len([x for x in events.envelopes if x["action_type"] == "delete.ingredients.success"
                                   and x.get("traceparent", "")[3:35] == trace_id]) == 2)
    caused = [e for e in events.envelopes if e.get("traceparent", "")[3:35] == trace_id]
    assert sorted(e["action_type"] for e in caused) == ["delete.ingredients.success", "delete.ingredients.success",
                                                        "delete.recipe.pending", "delete.recipe.success"]
    ask = next(e for e in caused if e["action_type"] == "delete.recipe.pending")
    outcome = next(e for e in caused if e["action_type"] == "delete.recipe.success")
    assert outcome["caused_by"] == ask["action_id"]
    assert {e["caused_by"] for e in caused if e["action_type"] == "delete.ingredients.success"} \
        == {outcome["action_id"]}

    deadline = time.monotonic() + 20
    while True:  # the connection records its cascade once it has committed it
        done = trace_command(cloud, trace_id, "--json", "--timeout", "1.5")
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        entries = [entry for _, entry in walk(found["actions"])]
        if len([e for e in entries if e["action_type"] == "delete.ingredients.success"]) == 2 \
                or time.monotonic() > deadline:
            break
    assert found["trace_ids"] == [trace_id] and {e["trace_id"] for e in entries} == {trace_id}
    assert {"recipe", "ingredient", "ingredients", "user", "api"} <= set(found["services"])
    tree = {(depth, e["action_type"], e["service"], e["status"]) for depth, e in walk(found["actions"])}
    assert {(0, "delete.recipe.pending", "recipe", "success"), (1, "delete.recipe.success", "ingredients", "success"),
            (2, "delete.ingredients.success", "ingredients", "success")} <= tree
    root = next(e for e in found["actions"] if e["action_type"] == "delete.recipe.pending")
    assert root["action_id"] == ask["action_id"] and root["duration_ms"] > 0 and root["time"]

    # by the ask's action id, as text: the same tree, indented by cause
    text = trace_command(cloud, ask["action_id"], "--timeout", "1.5")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"trace {trace_id}"

    def indent(action_type):
        line = next(line for line in lines if f"  {action_type}  " in line or f" {action_type}  " in line)
        return len(line[14:]) - len(line[14:].lstrip(" "))

    assert (indent("delete.recipe.pending"), indent("delete.recipe.success"), indent("delete.ingredients.success")) \
        == (0, 2, 4)
    assert len([line for line in lines if "delete.ingredients.success" in line]) == 2

    assert trace_command(cloud, uuid.uuid4().hex, "--timeout", "1").returncode == 1  # nothing recorded: says so

