"""The gateway's GraphQL schema, built from the summaries the services announced.

- one query field per model service (``recipe``), taking that service's filters;
- on each model type, one list field per connection, in both directions: forward under
  the connection's name (``recipe { ingredients }``), reverse under the plural of the
  connection's ``from`` column (``ingredient { recipes }``, ``user { followers }``);
- one mutation per announced mutation (``createRecipe(name: …) { recipe { id } }``), and
  the user mutations (``registerUser``, ``loginUser``…, see ``users``);
- ``recipeCreated``, ``recipeUpdated``, ``recipeDeleted`` subscriptions per service (``live``).

Every resolver asks services over the bus through the request's QueryContext, which
batches rows by service and level (see ``execution``).
"""
import dataclasses
from dataclasses import dataclass

import graphene

from nautilus_core.actions import crud_action, name_of
from nautilus_core.filters import filter_arguments
from nautilus_core.limits import ASKS
from nautilus_core.types import object_type, wire_scalar

from .authorization import owner_inputs
from .live import DELETED_TYPE, attach_subscribers, subscription_type
from .scope import current_scope
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


def _scalar_field(item, **kwargs):
    """A summary's field (or output): non-null when the service says every row has a value."""
    type_ = wire_scalar(item["type"])
    return graphene.Field(graphene.NonNull(type_) if item.get("required") else type_,
                          description=item.get("description") or f"The {item['name']}.",
                          deprecation_reason=item.get("deprecation_reason"), **kwargs)


def build_schema(snapshot, gateway):
    """A graphene Schema for the services in ``snapshot`` (auto_camelcase off: names as announced)."""
    types = {}
    links = links_of(snapshot)
    for name, summary in {**snapshot.models, **snapshot.connections}.items():
        taken = {"Query", "Mutation", "Subscription", DELETED_TYPE, *(t._meta.name for t in types.values())}
        if _type_name(name) in taken:  # graphene would silently let one type replace the other
            raise ValueError(f"the service {name!r} would be the GraphQL type {_type_name(name)!r}, which is taken")
        attrs = {"pk": graphene.ID(required=True, description="The primary key of this row.")}
        for item in summary["fields"]:
            attrs[item["name"]] = _scalar_field(item)
        for link in (lk for lk in links if lk.source == name):
            attrs[link.field] = graphene.Field(
                graphene.List(graphene.NonNull(lambda target=link.target: types[target])),
                args=_filters(snapshot.models[link.target]), resolver=_follow(link),
                description=f"The {link.target} rows linked to this {link.source} by the {link.connection} "
                            "connection, filtered (null, with an error, when a service does not answer).")
        types[name] = object_type(_type_name(name), summary.get("description") or f"A row of the {name} service.",
                                  attrs)

    query_fields = {"_services": graphene.Field(
        graphene.NonNull(graphene.List(graphene.NonNull(graphene.String))),
        resolver=lambda root, info: sorted([*snapshot.models, *snapshot.connections]),
        description="The names of the services the gateway knows.")}
    for name, summary in snapshot.models.items():
        query_fields[name] = graphene.Field(
            graphene.List(graphene.NonNull(types[name])), args=_filters(summary), resolver=_read(name),
            description=f"The rows of the {name} service matching every filter given, in order (null, with an "
                        "error, when the service does not answer).")
    query = object_type("Query", "Reading the cloud: one field per model service.", query_fields)
    hidden = {crud_action("create", gateway.user_service)}  # registerUser replaces it: a user needs a password
    mutation_fields = {name: _mutation_field(mutation, types, hidden_inputs=owner_inputs(gateway, mutation))
                       for name, mutation in snapshot.mutations.items() if mutation["event"] not in hidden}
    mutation_fields.update(user_mutations(snapshot, types, gateway))
    mutation = object_type("Mutation", "Changing the cloud: each mutation is an action sent to a service.",
                            mutation_fields) if mutation_fields else None
    schema = graphene.Schema(query=query, mutation=mutation, subscription=subscription_type(snapshot, types, _filters),
                             auto_camelcase=False)
    _count_asks(schema.graphql_schema, snapshot, links)
    attach_subscribers(schema.graphql_schema, snapshot)  # gateway/live.py: each field's event stream
    return schema


def _count_asks(graphql_schema, snapshot, links):
    """Say on each field how many asks resolving it costs (``nautilus_core.limits``): one per
    read, two per connection followed (the links, then the rows), two per mutation at most
    (an owner check reads the row first)."""
    def mark(field, asks):
        field.extensions = {**(field.extensions or {}), ASKS: asks}

    for name in snapshot.models:
        mark(graphql_schema.query_type.fields[name], 1)
    for link in links:
        mark(graphql_schema.get_type(_type_name(link.source)).fields[link.field], 2)
    for field in (graphql_schema.mutation_type.fields.values() if graphql_schema.mutation_type else ()):
        mark(field, 2)


def _counted(rows):
    scope = current_scope()
    if scope is not None and rows:
        scope.rows += len(rows)
    return rows


def _read(service):
    async def resolve(root, info, **filters):
        return _counted(await info.context.gateway.object_resolver(info.context, service, filters))

    return resolve


def _follow(link):
    async def resolve(row, info, **filters):
        return _counted(await info.context.gateway.connection_resolver(info.context, link, row, filters))

    return resolve


def _mutation_field(mutation, types, hidden_inputs=()):
    service = name_of(mutation["event"])
    outputs = {}
    for output in mutation.get("outputs", []):
        if isinstance(output["type"], dict):  # the record of the service the mutation changes
            outputs[output["name"]] = graphene.Field(
                types[service] if service in types else graphene.JSONString,
                description=output.get("description") or f"The {service} as it is now.")
        else:
            outputs[output["name"]] = _scalar_field(output)
    name = f"{mutation['name'][:1].upper()}{mutation['name'][1:]}Payload"
    payload_type = object_type(name, f"What {mutation['name']} returns.", outputs)
    arguments = {i["name"]: graphene.Argument(wire_scalar(i["type"]), required=bool(i.get("required")),
                                              description=i.get("description") or f"The {i['name']}.",
                                              deprecation_reason=i.get("deprecation_reason"))
                 for i in mutation.get("inputs", []) if i["name"] not in hidden_inputs}  # the gateway sets those

    async def resolve(root, info, **args):
        return await info.context.gateway.mutation_resolver(info.context, mutation, args)

    return graphene.Field(payload_type, args=arguments, resolver=resolve,
                          description=mutation.get("description") or f"Sends {mutation['event']} to the {service} "
                                                                     "service.")
