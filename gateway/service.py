"""APIGateway: one GraphQL endpoint for a whole cloud.

It has no domain data. It learns the cloud from ``init.service.pending`` announcements
(and a ``roll_call`` when it starts), builds a schema from them, resolves queries by
asking services over the bus, and forwards mutations as actions::

    class RecipeBookAPI(nautilus.APIGateway):
        pass
"""
from asgiref.sync import async_to_sync, sync_to_async

from nautilus_core.actions import ANNOUNCE, QUERY, ROLL_CALL
from nautilus_core.conf import nautilus_settings
from nautilus_core.service import ActionError, Service, on_action
from nautilus_core.types import json_value

from .execution import QueryContext, page
from .registry import registry
from .schema import PAGING, build_schema
from .views import graphql

__all__ = ["APIGateway"]


class APIGateway(Service):
    name = "api"

    @property
    def ask_timeout(self):
        return nautilus_settings.ASK_TIMEOUT

    # -- discovery -------------------------------------------------------------------

    def announce(self):
        """Announce the gateway, then ask every service to announce itself (the roll call)."""
        super().announce()
        self.bus.publish(ROLL_CALL, {})

    @on_action(ROLL_CALL, record=False)
    def answer_roll_call(self, action):
        Service.announce(self)  # not self.announce(): a roll call must not start another one

    @on_action(ANNOUNCE, record=False)
    def record_announcement(self, action):
        registry.record(action.payload)

    def current_schema(self):
        """The schema of the cloud as announced (rebuilt when a summary changes)."""
        snapshot = registry.snapshot()
        return snapshot, _schema(snapshot)

    # -- executing queries -----------------------------------------------------------

    async def execute(self, query, variables=None, operation_name=None, user=None, request=None):
        """Run a GraphQL request against the cloud; returns graphql-core's ExecutionResult."""
        snapshot, schema = await sync_to_async(self.current_schema)()
        context = QueryContext(self, snapshot, user=user, request=request)
        return await schema.execute_async(query, variable_values=variables, operation_name=operation_name,
                                          context_value=context)

    @on_action(QUERY, record=False)
    def answer_query(self, action):
        """``query.api.pending`` ``{"query", "variables", "operationName"}`` → ``{"data", "errors"}``."""
        query, variables = action.payload.get("query"), action.payload.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise ActionError('A query needs {"query": "<GraphQL>", "variables": {…}}.', "invalid_query")
        result = async_to_sync(self.execute)(query, variables, action.payload.get("operationName"))
        return {"data": result.data, "errors": [error.formatted for error in result.errors or ()]}

    # -- resolvers (the original's names; override to change how the cloud is asked) --

    async def object_resolver(self, context, object_name, filters):
        """The rows of ``object_name`` matching the query's filters: one ask."""
        return await context.read(object_name, filters)

    async def connection_resolver(self, context, link, row, filters):
        """The rows a connection links to ``row``: batched per level with every other row's."""
        ids = await context.linked_ids(link).load(str(row["pk"]))
        paging = {name: filters.pop(name) for name in PAGING if name in filters}
        rows = await context.rows(link.target, filters).load_many(ids)
        return page([r for r in rows if r is not None], **paging)

    async def mutation_resolver(self, context, mutation, args):
        """Forward a mutation as its announced action; return the selected outputs."""
        result = await context.ask(mutation["event"], {name: json_value(value) for name, value in args.items()})
        outputs = {}
        for output in mutation.get("outputs", []):
            if isinstance(output["type"], dict):
                summary = context.snapshot.service(mutation["event"].split(".")[1]) or {}
                outputs[output["name"]] = {**result, "pk": result.get(summary.get("pk", "id"))}
            else:
                outputs[output["name"]] = result.get(output["name"])
        return outputs


_schemas = {}


def _schema(snapshot):
    """The schema for a snapshot, built once per distinct set of summaries."""
    schema = _schemas.get(snapshot.key)
    if schema is None:
        _schemas.clear()  # only the newest cloud is asked for
        schema = _schemas[snapshot.key] = build_schema(snapshot)
    return schema



APIGateway.route("/graphql")(graphql)
