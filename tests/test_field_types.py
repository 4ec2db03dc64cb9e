"""Every Django field type through a ModelService, in process (handlers called directly)."""
import uuid

import pytest

from model_service.service import ModelService
from nautilus_core.actions import Action
from tests.kitchen.models import Gadget, Tag

pytestmark = pytest.mark.django_db


def perform(service, method, payload):
    action = Action(f"{method}.{service.name}.pending", payload)
    return service.perform(service.handlers[action.action_type], action)


def test_summary_names_a_graphql_type_for_every_field():
    fields = {f["name"]: f["type"] for f in ModelService(model=Gadget).summarize()["fields"]}
    assert fields == {
        "id": "ID", "name": "String", "notes": "String", "email": "String", "count": "Int", "big": "BigInt",
        "ratio": "Float", "price": "Decimal", "active": "Boolean", "made_on": "Date", "made_at": "DateTime",
        "alarm": "Time", "warranty": "String", "serial": "UUID", "specs": "JSON", "parent": "ID",
    }


def test_every_type_is_written_and_read_back():
    service = ModelService(model=Gadget)
    parent = perform(service, "create", {"name": "parent"}).payload
    serial = str(uuid.uuid4())
    created = perform(service, "create", {
        "name": "kettle", "notes": "hot", "email": "k@example.com", "count": 3, "big": 2**40, "ratio": 0.5,
        "price": "19.99", "active": False, "made_on": "2024-02-29", "made_at": "2024-02-29T10:30:00+00:00",
        "alarm": "07:15:00", "warranty": "P30D", "serial": serial, "specs": {"watts": [1200, 2000]},
        "parent": parent["id"],
    })
    assert created.action_type == "create.gadget.success", created.payload
    record = created.payload
    assert record["price"] == "19.99" and record["big"] == 2**40 and record["serial"] == serial
    assert record["made_on"] == "2024-02-29" and record["made_at"] == "2024-02-29T10:30:00+00:00"
    assert record["alarm"] == "07:15:00" and record["warranty"] == "P30DT00H00M00S"
    assert record["specs"] == {"watts": [1200, 2000]} and record["parent"] == parent["id"]

    result = service.schema.execute(
        "query($id: ID) { all_models(pk: $id) { pk name big ratio price active made_on made_at alarm "
        "warranty serial specs parent } }", variable_values={"id": str(record["id"])})
    assert result.errors is None
    assert result.data["all_models"] == [{
        "pk": str(record["id"]), "name": "kettle", "big": 2**40, "ratio": 0.5, "price": "19.99",
        "active": False, "made_on": "2024-02-29", "made_at": "2024-02-29T10:30:00+00:00", "alarm": "07:15:00",
        "warranty": "P30DT00H00M00S", "serial": serial, "specs": {"watts": [1200, 2000]},
        "parent": str(parent["id"]),
    }]
    by_parent = service.schema.execute(f'{{ all_models(parent: "{parent["id"]}") {{ name }} }}')
    assert by_parent.data == {"all_models": [{"name": "kettle"}]}


def test_values_that_do_not_parse_are_reported_per_field():
    reply = perform(ModelService(model=Gadget), "create", {
        "name": "bad", "made_on": "yesterday", "price": "cheap", "serial": "nope", "id": 5,
        "parent": 999999,
    })
    assert reply.action_type == "create.gadget.error"
    fields = reply.payload["details"]["fields"]
    assert set(fields) == {"made_on", "price", "serial", "id", "parent"}
    assert fields["id"] == ["This field is set by the service and cannot be written."]
    assert fields["parent"] == ["gadget instance with id 999999 is not a valid choice."]


def test_custom_primary_key_and_camel_case_field():
    service = ModelService(model=Tag)
    summary = service.summarize()
    assert {"name": "code", "type": "ID", "required": True, "description": "Code."} in summary["fields"]
    create_inputs = {i["name"]: i["required"] for i in summary["mutations"][0]["inputs"]}
    assert create_inputs == {"code": True, "displayName": True}

    assert perform(service, "create", {"code": "veg", "displayName": "Vegetarian"}).action_type == "create.tag.success"
    assert perform(service, "create", {"code": "hot", "display_name": "Spicy"}).action_type == "create.tag.success"
    result = service.schema.execute('{ all_models(pk: "veg") { pk code displayName } }')
    assert result.data == {"all_models": [{"pk": "veg", "code": "veg", "displayName": "Vegetarian"}]}
    result = service.schema.execute('{ all_models(displayName_in: ["Spicy"], order_by: ["-displayName"]) { code } }')
    assert result.data == {"all_models": [{"code": "hot"}]}

    updated = perform(service, "update", {"id": "veg", "displayName": "Veggie"})
    assert updated.payload == {"code": "veg", "displayName": "Veggie"}
    assert perform(service, "delete", {"code": "hot"}).payload == {"id": "hot", "code": "hot", "displayName": "Spicy"}
    assert list(Tag.objects.values_list("code", flat=True)) == ["veg"]


def test_a_field_named_like_pk_is_not_mistaken_for_the_primary_key():
    # the original replaced every "pk" substring: a field "pkg" became "idg"
    from model_service.fields import field_lookup

    lookup = field_lookup(Gadget)
    assert lookup["pk"].name == "id" and "pkg" not in lookup

