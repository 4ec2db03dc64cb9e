"""The gateway's GraphQL schema, built from the summaries the services announced.

- one query field per model service (``recipe``), taking that service's filters;
- on each model type, one list field per connection, in both directions: forward under
  the connection's name (``recipe { ingredients }``), reverse under the plural of the
  connection's ``from`` column (``ingredient { recipes }``, ``user { followers }``);
- one mutation per announced mutation (``createRecipe(name: …) { recipe { id } }``), and
  the user mutations (``registerUser``, ``loginUser``…, see ``users``).

Every resolver asks services over the bus through the request's QueryContext, which
batches rows by service and level (see ``execution``).
"""
import dataclasses
from dataclasses import dataclass

import graphene

from nautilus_core.actions import crud_action, name_of
from nautilus_core.filters import filter_arguments
from nautilus_core.types import wire_scalar

from .authorization import owner_inputs
from .users import user_mutations

__all__ = ["Link", "links_of", "build_schema"]


@dataclass(frozen=True)
class Link:
    """A list field on ``source``'s type that follows a connection to ``target`` rows."""

    field: str
    connection: str
    source: str
    target: str
    source_column: str
    target_column: str


def _column(end):
    return end.get("field") or end["service"]


def links_of(snapshot):
    """Both directions of every connection whose two services are known."""
    links = []
    for name, summary in sorted(snapshot.connections.items()):
        start, end = summary["connection"]["from"], summary["connection"]["to"]
        if start["service"] not in snapshot.models or end["service"] not in snapshot.models:
            continue
        links.append(Link(name, name, start["service"], end["service"], _column(start), _column(end)))
        links.append(Link(f"{_column(start)}s", name, end["service"], start["service"], _column(end), _column(start)))
    taken = {(s, f["name"]) for s, summary in snapshot.models.items() for f in summary["fields"]}
    unique = []
    for link in links:  # a reverse name that collides with a field falls back to "<connection>_reverse"
        if (link.source, link.field) in taken:
            link = dataclasses.replace(link, field=f"{link.connection}_reverse")
        taken.add((link.source, link.field))
        unique.append(link)
    return unique


def _filters(summary):
    """The filters of a service's ``all_models``, as gateway arguments."""
    return filter_arguments([(f["name"], f["type"]) for f in summary["fields"]], wire_scalar)


def _type_name(service):
    return service[:1].upper() + service[1:]


def build_schema(snapshot, gateway):
    """A graphene Schema for the services in ``snapshot`` (auto_camelcase off: names as announced)."""
    types = {}
    links = links_of(snapshot)
    for name, summary in {**snapshot.models, **snapshot.connections}.items():
        taken = {"Query", "Mutation", "Subscription", *(t._meta.name for t in types.values())}
        if _type_name(name) in taken:  # graphene would silently let one type replace the other
            raise ValueError(f"the service {name!r} would be the GraphQL type {_type_name(name)!r}, which is taken")
        attrs = {"pk": graphene.ID()}
        for item in summary["fields"]:
            attrs[item["name"]] = graphene.Field(wire_scalar(item["type"]))
        for link in (lk for lk in links if lk.source == name):
            attrs[link.field] = graphene.Field(
                graphene.List(lambda target=link.target: types[target]),
                args=_filters(snapshot.models[link.target]), resolver=_follow(link))
        types[name] = type(_type_name(name), (graphene.ObjectType,), attrs)

    query_fields = {"_services": graphene.List(graphene.String, resolver=lambda root, info: sorted(
        [*snapshot.models, *snapshot.connections]))}
    for name, summary in snapshot.models.items():
        query_fields[name] = graphene.Field(graphene.List(types[name]), args=_filters(summary),
                                            resolver=_read(name))
    query = type("Query", (graphene.ObjectType,), query_fields)
    hidden = {crud_action("create", gateway.user_service)}  # registerUser replaces it: a user needs a password
    mutation_fields = {name: _mutation_field(mutation, types, hidden_inputs=owner_inputs(gateway, mutation))
                       for name, mutation in snapshot.mutations.items() if mutation["event"] not in hidden}
    mutation_fields.update(user_mutations(snapshot, types, gateway))
    mutation = type("Mutation", (graphene.ObjectType,), mutation_fields) if mutation_fields else None
    return graphene.Schema(query=query, mutation=mutation, auto_camelcase=False)


def _read(service):
    async def resolve(root, info, **filters):
        return await info.context.gateway.object_resolver(info.context, service, filters)

    return resolve


def _follow(link):
    async def resolve(row, info, **filters):
        return await info.context.gateway.connection_resolver(info.context, link, row, filters)

    return resolve


def _mutation_field(mutation, types, hidden_inputs=()):
    service = name_of(mutation["event"])
    outputs = {}
    for output in mutation.get("outputs", []):
        if isinstance(output["type"], dict):  # the record of the service the mutation changes
            outputs[output["name"]] = graphene.Field(types[service]) if service in types else graphene.JSONString()
        else:
            outputs[output["name"]] = graphene.Field(wire_scalar(output["type"]))
    payload_type = type(f"{mutation['name'][:1].upper()}{mutation['name'][1:]}Payload", (graphene.ObjectType,),
                        outputs)
    arguments = {i["name"]: graphene.Argument(wire_scalar(i["type"]), required=bool(i.get("required")))
                 for i in mutation.get("inputs", []) if i["name"] not in hidden_inputs}  # the gateway sets those

    async def resolve(root, info, **args):
        return await info.context.gateway.mutation_resolver(info.context, mutation, args)

    return graphene.Field(payload_type, args=arguments, resolver=resolve)
