"""The gateway's ``/graphql``: GraphQL over HTTP (GET and POST), GraphiQL for browsers.

Executed asynchronously so that one request's asks to many services wait together.
A query error is a 200 with ``errors``; only a request that is not GraphQL at all
(a body that is not JSON, no query) is a 400.
"""
import json

from asgiref.sync import sync_to_async
from django.http import HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from graphene_django_graphiql_static.views import GraphiQLOfflineView
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from graphql.error import GraphQLSyntaxError

from nautilus_core.service import get_service

__all__ = ["graphql"]


class BadRequest(ValueError):
    pass


def _params(request):
    """``(query, variables, operation_name)`` from a GET query string or a JSON / form POST body."""
    if request.method == "GET":
        data = request.GET
    elif request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except json.JSONDecodeError as exc:
            raise BadRequest(f"The body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object with a query.")
    elif request.content_type == "application/graphql":
        data = {"query": request.body.decode()}
    else:
        data = request.POST
    query, variables = data.get("query"), data.get("variables")
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("Must provide a query string.")
    if isinstance(variables, str):
        try:
            variables = json.loads(variables) if variables.strip() else None
        except json.JSONDecodeError:
            raise BadRequest("Variables are invalid JSON.") from None
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("Variables must be a JSON object.")
    return query, variables, data.get("operationName") or None


def _is_mutation(query, operation_name):
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except GraphQLSyntaxError:
        return False  # execution reports the syntax error
    return operation is not None and operation.operation == OperationType.MUTATION


def _wants_graphiql(request):
    return request.method == "GET" and "raw" not in request.GET and "text/html" in request.headers.get("Accept", "")


def _graphiql(request):
    _, schema = get_service().current_schema()
    return GraphiQLOfflineView.as_view(schema=schema, graphiql=True)(request)


@csrf_exempt
async def graphql(request):
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if _wants_graphiql(request):  # the page only; its queries come back as POSTs
        return await sync_to_async(_graphiql)(request)
    try:
        query, variables, operation_name = _params(request)
    except BadRequest as exc:
        return JsonResponse({"errors": [{"message": str(exc)}]}, status=400)
    if request.method == "GET" and _is_mutation(query, operation_name):
        return JsonResponse({"errors": [{"message": "Mutations must be sent with POST."}]}, status=405,
                            headers={"Allow": "POST"})
    gateway = get_service()
    try:
        user = await gateway.session_of(request.headers.get("Authorization"))
    except GraphQLError as exc:  # a bad, expired or revoked token: say so, run nothing
        return JsonResponse({"data": None, "errors": [exc.formatted]})
    result = await gateway.execute(query, variables, operation_name, user=user, request=request)
    body = {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return JsonResponse(body)
