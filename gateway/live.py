"""The gateway's subscription fields, and what one change means to one subscriber.

For every model service and connection ``recipe``: ``recipeCreated`` and ``recipeUpdated`` (the
row, taking the service's filters but paging), ``recipeDeleted`` (``{ id }``, taking ``pk`` and
``pk_in``). Each event is resolved like a query, when it is delivered: the row is read by its
pk with the subscription's filters and the caller's read rule (``gateway/authorization.py``),
so a row the caller may not read, or that no longer matches, sends nothing; nested fields go
through the request's batched loaders, a fresh set per event. A connection's row is sent only
when the caller may read the rows at both its ends. A deleted row cannot be read: its delete
outcome carries it as it was just before, and it is sent when the caller's read rule (and
``@auth_criteria``) holds for that row; a connection's, when the rows at its ends are readable
still, or were as they were deleted (a cascade: ``events.Hub.deleted``). A delete outcome
without the whole row (a peer that sends only the id) is not sent under a rule (fail closed).
"""
import time

import graphene
from asgiref.sync import sync_to_async
from graphql import GraphQLError

from nautilus_core.filters import PAGING_ARGUMENTS
from nautilus_core.limits import ASKS
from nautilus_core.rules import holds
from nautilus_core.types import object_type

from .authorization import NotFound, has_criteria, read_rule, readable, visible_row
from .events import Notice, hub
from .execution import QueryContext
from .registry import registry

__all__ = ["DELETED_TYPE", "subscription_type", "attach_subscribers", "LiveContext"]

DELETED_TYPE = "DeletedRow"
_PAST = {"create": "Created", "update": "Updated", "delete": "Deleted"}


def _fields(snapshot):
    """``{field name: (method, service)}`` of the subscription fields of a snapshot."""
    return {f"{name}{_PAST[method]}": (method, name) for name in sorted({**snapshot.models, **snapshot.connections})
            for method in _PAST}


def subscription_type(snapshot, types, filters_of):
    """The ``Subscription`` type (None in a cloud without services); ``filters_of(summary)``: a service's filters."""
    deleted = object_type(DELETED_TYPE, "A row that was deleted.", {
        "id": graphene.ID(required=True, description="The primary key the deleted row had.")})
    fields = {}
    for field, (method, service) in _fields(snapshot).items():
        summary = snapshot.service(service)
        if method == "delete":
            args = {name: argument for name, argument in filters_of(summary).items() if name in ("pk", "pk_in")}
            fields[field] = graphene.Field(
                graphene.NonNull(deleted), args=args, resolver=_unwrap,
                description=f"Each {service} row deleted (by a mutation, an action or in the service's admin) "
                            "that the caller could read, among those whose pk is given.")
        else:
            args = {name: argument for name, argument in filters_of(summary).items() if name not in PAGING_ARGUMENTS}
            fields[field] = graphene.Field(
                graphene.NonNull(types[service]), args=args, resolver=_unwrap,
                description=f"Each {service} row {_PAST[method].lower()} that the caller may read and that matches "
                            "every filter given, as it is when the event is sent (an error when a service is "
                            "unavailable).")
    return object_type("Subscription", "Following the cloud: one event per committed change.", fields) \
        if fields else None


def attach_subscribers(graphql_schema, snapshot):
    """Give each subscription field its event stream, and its cost in asks (the read of each event's row)."""
    if graphql_schema.subscription_type is None:
        return
    for name, (method, service) in _fields(snapshot).items():
        field = graphql_schema.subscription_type.fields[name]
        field.subscribe = _subscriber(method, service)
        field.extensions = {**(field.extensions or {}), ASKS: 0 if method == "delete" else 1}


class _Failure:
    """An event that could not be resolved: sent as the field's error."""

    def __init__(self, error):
        self.error = error


def _unwrap(root, info, **filters):
    if isinstance(root, _Failure):
        raise root.error
    return root


def _subscriber(method, service):
    async def subscribe(root, info, **filters):
        follower = info.context.follow(method, service)
        await hub.ready()
        return _events(info.context, follower, method, service, filters)

    return subscribe


async def _events(context, follower, method, service, filters):
    try:
        async for event in follower:
            if not await context.renew():
                return  # the session ended: the connection is being closed
            if isinstance(event, Notice):
                yield _Failure(GraphQLError(event.message, extensions={
                    "code": event.code, **({"service": event.service} if event.service else {})}))
                continue
            pk = event.payload["pk"]
            if not _pk_matches(filters, pk):
                continue
            try:
                if method == "delete":
                    if await _deleted_visible(context, service, event.payload):
                        yield {"id": pk}
                    continue
                row = await _visible(context, service, pk, filters)
            except GraphQLError as error:  # a service did not answer: tell, and go on with the next event
                yield _Failure(error)
                continue
            if row is not None:
                yield row
    finally:
        follower.close()


def _pk_matches(filters, pk):
    return (filters.get("pk") is None or str(filters["pk"]) == pk) and \
        (filters.get("pk_in") is None or pk in {str(item) for item in filters["pk_in"]})


async def _visible(context, service, pk, filters):
    """The row ``pk`` of ``service`` as the caller may read it with ``filters``, else None."""
    rows = await context.gateway.object_resolver(context, service, {**filters, "pk": pk})
    if not rows:
        return None
    connection = context.snapshot.connections.get(service, {}).get("connection")
    for column, end in _ends(connection):
        if _guarded(context, end):
            try:
                await visible_row(context, end, rows[0].get(column))
            except NotFound:
                return None
    return rows[0]


def _ends(connection):
    if connection is None:
        return []
    return [(end.get("field") or end["service"], end["service"]) for end in (connection["from"], connection["to"])]


def _guarded(context, service):
    return context.obey_auth and (service in context.gateway.read_rules or has_criteria(context, service))


async def _was_visible(context, service, row):
    """Whether the caller could read ``row`` of ``service`` as it was (a deleted row: as its outcome gave it)."""
    if not _guarded(context, service):
        return True
    fields = {field["name"] for field in (context.snapshot.service(service) or {}).get("fields", ())}
    if row is None or not fields <= set(row):
        return False  # not the whole row: a rule cannot be judged by what is missing
    try:
        rule = read_rule(context, service)
    except GraphQLError:
        return False
    if rule is not None and not holds(rule, row):
        return False
    return bool(await readable(context, service, [row]))


async def _deleted_visible(context, service, row):
    """Whether the caller could read the deleted ``row``, and, for a connection, the rows at its ends."""
    if not await _was_visible(context, service, row):
        return False
    connection = context.snapshot.connections.get(service, {}).get("connection")
    for column, end in _ends(connection):
        if not _guarded(context, end):
            continue
        pk = row.get(column)
        deleted = hub.deleted.get(end, pk) if pk is not None else None
        if deleted is not None:  # deleted just before (the cascade's cause): as it was
            if not await _was_visible(context, end, deleted):
                return False
            continue
        try:  # still there: as it is
            await visible_row(context, end, pk)
        except NotFound:
            return False
    return True


class LiveContext(QueryContext):
    """A QueryContext for one subscription: renewed for each event (a new time budget, new loaders)."""

    def __init__(self, gateway, snapshot, connection, user=None):
        super().__init__(gateway, snapshot, user=user)
        self.connection = connection
        self.follower = None

    def follow(self, method, service):
        self.follower = self.connection.follow(method, service)
        return self.follower

    async def renew(self):
        """Ready for the next event; False when the caller's session ended."""
        self.snapshot = registry.fresh() or await sync_to_async(registry.snapshot)()
        hub.snapshot = self.snapshot
        self._loaders = {}
        self.asks = 0
        self.deadline = time.monotonic() + self.budget
        return await self.connection.session_valid()
