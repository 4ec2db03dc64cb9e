"""The gateway's ``/graphql``: GraphQL over HTTP (``nautilus_core.http``), GraphiQL for browsers.

Executed asynchronously so that one request's asks to many services wait together. A large
answer is serialized in a thread, so that other clients are served meanwhile; a client that
disconnects cancels its request's asks (``scope``).
"""
import asyncio

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from graphene_django_graphiql_static.views import GraphiQLOfflineView
from graphql import GraphQLError

from nautilus_core import http
from nautilus_core.service import get_service

from .scope import request_scope
from .versions import VersionNotServed

__all__ = ["graphql"]

#: answers with more rows than this are serialized off the event loop
THREADED_ROWS = 200


class GatewayGraphiQL(GraphiQLOfflineView):
    """GraphiQL with its assets served locally, whose subscriptions go over the gateway's WebSocket
    (``templates/gateway/graphiql.html``, ``static/gateway/graphiql.js``): the headers pane's
    ``Authorization`` is sent in ``connection_init``."""

    graphiql_template = "gateway/graphiql.html"

    def __init__(self, subscription_path=None, **kwargs):
        super().__init__(**kwargs)
        self.subscription_path = subscription_path  # graphene-django's __init__ keeps only a class attribute's


#: where the page's subscriptions go: the gateway serves WebSocket at /graphql only (gateway/subscriptions.py)
SUBSCRIPTION_PATH = "/graphql"


def _graphiql(request, major=None):
    _, schema = get_service().current_schema(major)
    # /v<N>/graphql has no WebSocket: its page says to subscribe at /graphql
    path = SUBSCRIPTION_PATH if major is None else None
    return GatewayGraphiQL.as_view(schema=schema, graphiql=True, subscription_path=path)(request)


@csrf_exempt
async def graphql(request, major=None):
    """``/graphql``, or ``/v<major>/graphql``: one major of the API (``gateway/versions.py``)."""
    try:
        return await _graphql(request, major)
    except VersionNotServed as exc:  # that major's replicas are gone (410) or never were (404)
        return JsonResponse({"data": None, "errors": [exc.error()]}, status=exc.status)


async def _graphql(request, major):
    if http.wants_graphiql(request):  # the page only; its queries come back as POSTs
        return await sync_to_async(_graphiql)(request, major)
    try:
        graphql_request = http.read_request(request)
    except http.BadRequest as exc:
        return http.respond_bad_request(request, exc)
    gateway = get_service()
    try:
        user = await gateway.session_of(request.headers.get("Authorization"))
    except GraphQLError as exc:  # a bad, expired or revoked token: say so, run nothing
        return http.render(request, {"data": None, "errors": [exc.formatted]})
    with request_scope() as scope:
        result = await gateway.execute(graphql_request.query, graphql_request.variables,
                                       graphql_request.operation_name, user=user, request=request, major=major)
    if scope.rows > THREADED_ROWS:
        return await asyncio.to_thread(http.respond, request, result, graphql_request)
    return http.respond(request, result, graphql_request)
