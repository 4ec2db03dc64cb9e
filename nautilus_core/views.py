"""HTTP views every service serves: its GraphQL API and a health check."""
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from graphene_django_graphiql_static.views import GraphiQLOfflineView

from . import http
from .graphql import execute_query
from .service import get_service


def graphql_view(schema):
    """``/graphql``: GraphQL over HTTP (``nautilus_core.http``), GraphiQL in a browser with its assets served locally."""
    graphiql = GraphiQLOfflineView.as_view(schema=schema, graphiql=True)

    @csrf_exempt
    def view(request):
        if http.wants_graphiql(request):
            return graphiql(request)
        try:
            graphql_request = http.read_request(request)
        except http.BadRequest as exc:
            return http.respond_bad_request(request, exc)
        return http.respond(request, execute_query(schema, graphql_request.query, graphql_request.variables,
                                                   graphql_request.operation_name, context=request))

    return view


def health(request):
    """``/health``: 200 when the service and its database answer, 503 otherwise."""
    service = get_service()
    body = {"service": service.name, "version": service.summarize()["version"]}
    try:
        connection.ensure_connection()
    except Exception as exc:  # the point of a health check is to say so, not to crash
        return JsonResponse({**body, "status": "unavailable", "database": str(exc)}, status=503)
    return JsonResponse({**body, "status": "ok"})
