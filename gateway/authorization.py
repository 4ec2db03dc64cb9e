"""Who may read and write what, at the gateway.

Reads: a service's *read rule* (``APIGateway.read_rules``, data: ``nautilus_core.rules``)
travels with every read of that service as its ``where``, with the caller's id put in; the
service filters, orders and pages within it, so no answer depends on a row the caller may
not read. A Python ``@auth_criteria`` method is applied to the rows afterwards; the gateway
then reads without paging and pages the kept rows itself (correct pages, at the cost of
reading every row that matches the query's other filters).

Writes: a mutation needs a session unless it is public. A service in ``APIGateway.owners``
has its owner field set by the gateway on create (clients cannot send it) and its rows
updated and deleted by their owner only. A connection's links are made, changed and removed
only by the owner of the row in its guarded columns (``connection_owners``; by default its
``from`` column), and only between rows the caller may read. A row the caller may not read
and a row that does not exist get the same answer (``not_found``).
"""
import inspect

from graphql import GraphQLError

from nautilus_core.actions import name_of
from nautilus_core.rules import substitute

from .auth import AuthError

__all__ = ["NotFound", "read_rule", "has_criteria", "readable", "visible_row", "owner_inputs", "authorize"]


def read_rule(context, service):
    """The ``where`` of a read of ``service`` for the request's caller (None when unrestricted)."""
    rule = context.gateway.read_rules.get(service)
    if rule is None or not context.obey_auth:
        return None
    if not (context.snapshot.service(service) or {}).get("read_rules"):
        # a service that would ignore the rule must not be read at all (fail closed)
        raise GraphQLError(f"The {service} service does not apply read rules; upgrade it to read it.",
                           extensions={"code": "service_unavailable", "service": service})
    return substitute(rule, context.user_id)


def has_criteria(context, service):
    """Whether rows of ``service`` go through a Python ``@auth_criteria`` method in this request."""
    return context.obey_auth and service in context.gateway.auth_criteria


async def readable(context, service, rows):
    """The rows the request's user may read, by the service's ``@auth_criteria`` (if any)."""
    if not has_criteria(context, service):
        return rows
    criteria = context.gateway.auth_criteria[service]
    kept = []
    for row in rows:
        verdict = criteria(model=row, user_id=context.user_id)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict:
            kept.append(row)
    return kept


class NotFound(GraphQLError):
    """No such row, or one the caller may not read: the same answer."""

    def __init__(self, service, pk):
        super().__init__(f"There is no {service} with id {pk!r}.",
                         extensions={"code": "not_found", "service": service, "details": {"id": pk}})


async def visible_row(context, service, pk):
    """The row ``pk`` of ``service`` if the caller may read it; ``not_found`` otherwise, either way the same."""
    rows = await readable(context, service, await context.read(service, {"pk": pk}) if pk is not None else [])
    if not rows:
        raise NotFound(service, pk)
    return rows[0]


def owner_inputs(gateway, mutation):
    """Inputs of ``mutation`` that clients may not send: the owner field the gateway sets."""
    field = gateway.owners.get(name_of(mutation["event"]))
    return {field} if field and field != "pk" else set()


async def authorize(context, mutation, args):
    """The arguments to send for ``mutation``, or AuthError / ``not_found`` if the caller may not."""
    gateway = context.gateway
    if mutation["name"] not in gateway.public_mutations and context.user_id is None:
        raise AuthError(f"Log in to call {mutation['name']}: send 'Authorization: Bearer <sessionToken>'.",
                        "unauthenticated")
    service, method = name_of(mutation["event"]), mutation["event"].split(".")[0]
    args = {name: value for name, value in args.items() if name not in owner_inputs(gateway, mutation)}
    owner = gateway.owners.get(service)
    row = None
    if method == "create":
        if owner and owner != "pk":
            if context.user_id is None:
                raise AuthError(f"Log in to create a {service}: it is created for its owner.", "unauthenticated")
            args[owner] = context.user_id
    else:
        row = await visible_row(context, service, args.get("id"))
        if owner:
            _check_owner(context, service, row, owner, method)
    connection = context.snapshot.connections.get(service, {}).get("connection")
    if connection is not None:
        await _authorize_link(context, service, connection, args, row)
    return args


def _check_owner(context, service, row, owner, method):
    if str(row.get(owner) if owner != "pk" else row["pk"]) != str(context.user_id):
        raise AuthError(f"Only its owner may {method} this {service}.", "forbidden")


async def _authorize_link(context, service, connection, args, row):
    """A link is made, changed or removed by the owner of its guarded ends, between rows the caller may read."""
    gateway = context.gateway
    ends = {end.get("field") or end["service"]: end["service"] for end in (connection["from"], connection["to"])}
    start = connection["from"].get("field") or connection["from"]["service"]
    guarded = [column for column in gateway.connection_owners.get(service, [start]) if column in ends]
    if row is not None:  # an existing link: one the caller may not change is one it cannot see
        for column in guarded:
            try:
                linked = await visible_row(context, ends[column], row.get(column))
            except NotFound:
                raise NotFound(service, args.get("id")) from None
            _check_owner_of_end(context, gateway, ends[column], linked)
    for column, linked_service in ends.items():  # the new ends of a created or moved link
        if column in args:
            linked = await visible_row(context, linked_service, args[column])
            if column in guarded:
                _check_owner_of_end(context, gateway, linked_service, linked)


def _check_owner_of_end(context, gateway, service, row):
    owner = gateway.owners.get(service)
    if owner:
        _check_owner(context, service, row, owner, "link or unlink")
