"""Resolvers: how the gateway answers a GraphQL request by asking the cloud.

``execute`` runs a request against the schema of the cloud as announced (``gateway.discovery``);
its fields are resolved by ``object_resolver``, ``connection_resolver`` and ``mutation_resolver``
(the original's names: override them to change how the cloud is asked), which ask services
through the request's DataLoaders (``gateway.execution``) and keep what the user may read and
write (``gateway.authorization``).
"""
from asgiref.sync import async_to_sync, sync_to_async

from nautilus_core.actions import QUERY, crud_action, name_of
from nautilus_core.filters import PAGING_ARGUMENTS
from nautilus_core.graphql import execute_query_async
from nautilus_core.service import ActionError, on_action
from nautilus_core.types import json_value

from . import authorization
from .discovery import cloud_schema
from .execution import QueryContext, page
from .registry import registry
from .tokens import forget_user

__all__ = ["Resolvers"]


class Resolvers:
    """The gateway's execution of GraphQL requests (a part of ``APIGateway``)."""

    # -- executing queries -----------------------------------------------------------

    async def execute(self, query, variables=None, operation_name=None, user=None, request=None, obey_auth=True,
                      major=None):
        """Run a GraphQL request against the cloud (``major``: at ``/v<major>``); graphql-core's ExecutionResult."""
        snapshot = registry.fresh(major) or await sync_to_async(registry.snapshot)(major)
        context = QueryContext(self, snapshot, user=user, request=request, obey_auth=obey_auth)
        return await execute_query_async(cloud_schema(snapshot, self), query, variables, operation_name, context)

    @on_action(QUERY, record=False)
    def answer_query(self, action):
        """``query.api.pending`` ``{"query", "variables", "operationName"}`` → ``{"data", "errors"}``.

        The bus is the cloud's inside: these queries are not filtered by auth criteria.
        """
        query, variables = action.payload.get("query"), action.payload.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise ActionError('A query needs {"query": "<GraphQL>", "variables": {…}}.', "invalid_query")
        result = async_to_sync(self.execute)(query, variables, action.payload.get("operationName"), obey_auth=False)
        return {"data": result.data, "errors": [error.formatted for error in result.errors or ()]}

    # -- resolvers (the original's names; override to change how the cloud is asked) --

    async def object_resolver(self, context, object_name, filters):
        """The rows of ``object_name`` matching the query's filters that the user may read (one ask).

        The read rule goes with the ask, so the service pages visible rows; with a Python
        criterion the gateway reads without paging, keeps what it allows, then pages.
        """
        if not authorization.has_criteria(context, object_name):
            return await context.read(object_name, filters)
        paging = {name: filters.pop(name) for name in PAGING_ARGUMENTS if name in filters}
        return page(await self.readable(context, object_name, await context.read(object_name, filters)), **paging)

    async def connection_resolver(self, context, link, row, filters):
        """The rows a connection links to ``row``: batched per level with every other row's."""
        ids = await context.linked_ids(link).load(str(row["pk"]))
        paging = {name: filters.pop(name) for name in PAGING_ARGUMENTS if name in filters}
        rows = await context.rows(link.target, filters).load_many(ids)
        rows = await self.readable(context, link.target, [r for r in rows if r is not None])
        return page(rows, **paging)

    async def mutation_resolver(self, context, mutation, args):
        """Forward a mutation as its announced action, if the user may; return the selected outputs."""
        args = await self.authorize(context, mutation, dict(args))
        payload = {name: json_value(value) for name, value in args.items()}
        service = name_of(mutation["event"])
        result = await context.ask(mutation["event"], payload,
                                   action_id=context.idempotent_action_id(mutation["name"], payload, service))
        if mutation["event"] == crud_action("delete", self.user_service):
            await sync_to_async(forget_user)(result.get("id"))  # its sessions end now, not when the event arrives
        outputs = {}
        for output in mutation.get("outputs", []):
            if isinstance(output["type"], dict):
                outputs[output["name"]] = {**result, "pk": context.snapshot.pk_of(service, result)}
            else:
                outputs[output["name"]] = result.get(output["name"])
        return outputs

    # -- authorization (gateway/authorization.py) ----------------------------------------

    async def readable(self, context, service, rows):
        """The rows the request's user may read, by the service's ``@auth_criteria`` (if any)."""
        return await authorization.readable(context, service, rows)

    async def authorize(self, context, mutation, args):
        """The arguments to send for ``mutation``; refused without a session (unless public), on a row of
        someone else (``forbidden``) or on one the user may not read (``not_found``, as if it did not exist)."""
        args = await authorization.authorize(context, mutation, args)
        if name_of(mutation["event"]) == self.user_service and self.login_field in args:
            args[self.login_field] = self.normalize_login(args[self.login_field])
        return args

