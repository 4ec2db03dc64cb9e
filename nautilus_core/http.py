"""GraphQL over HTTP, by the spec (graphql.github.io/graphql-over-http): one reading of a
request and one shaping of a response, for every service's ``/graphql`` and the gateway's.

- GET (queries only: a mutation is a 405) with ``query``, ``variables`` and ``extensions``
  (JSON strings) and ``operationName``; POST with an ``application/json`` body (an object
  ``{"query", "variables", "operationName", "extensions"}``) or an ``application/graphql``
  one (the document). Another or no content type is a 415; a body that is not UTF-8 or not
  JSON, or a parameter of the wrong type, is a 400 that says which.
- ``extensions.persistedQuery`` (Apollo's automatic persisted queries, ``nautilus_core.persisted``)
  sends a document's SHA-256 instead of (or with) the document, by GET or POST.
- The response is ``application/graphql-response+json`` when the client accepts it (a
  document that does not parse, validate or fit the limits, or variables that do not fit
  it, are then a 400 without ``data``), else ``application/json`` (those are a 200).
  Execution errors are a 200 with ``data`` and ``errors`` either way.
"""
import json
from dataclasses import dataclass

from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from graphql import GraphQLError, OperationType, get_operation_ast, parse

from . import persisted
from .conf import nautilus_settings
from .graphql import Refused

__all__ = ["GraphQLRequest", "BadRequest", "read_request", "wants_graphiql", "media_type", "render", "respond",
           "respond_bad_request", "GRAPHQL_RESPONSE_JSON", "JSON"]

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"


class BadRequest(Exception):
    """A request that is not a GraphQL request; ``status`` and ``code`` say how."""

    def __init__(self, message, status=400, code="invalid_request", headers=None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


@dataclass(frozen=True)
class GraphQLRequest:
    query: str
    variables: dict = None
    operation_name: str = None
    extensions: dict = None
    persist: str = None  # the SHA-256 to keep the query under once it ran (automatic persisted queries)


def media_type(request):
    """The response's content type: the spec's own when the client accepts it, else JSON."""
    return request.get_preferred_type([JSON, GRAPHQL_RESPONSE_JSON]) or JSON


def wants_graphiql(request):
    """A browser asking for the page (its queries then come back as POSTs)."""
    return request.method == "GET" and "raw" not in request.GET and "text/html" in request.headers.get("Accept", "")


def read_request(request):
    """The GraphQLRequest of a Django request; BadRequest when it is none."""
    if request.method == "GET":
        params = {name: request.GET.get(name) for name in ("query", "operationName")}
        for name in ("variables", "extensions"):
            params[name] = _json_parameter(name, request.GET.get(name))
    elif request.method == "POST":
        params = _body_parameters(request)
    else:
        raise BadRequest("GraphQL is served with GET (queries) and POST.", 405, "method_not_allowed",
                         {"Allow": "GET, POST"})
    graphql_request = _checked(params)
    if request.method == "GET" and _is_mutation(graphql_request):
        raise BadRequest("Mutations must be sent with POST.", 405, "method_not_allowed", {"Allow": "POST"})
    return graphql_request


def _body(request):
    try:
        return request.body
    except RequestDataTooBig:
        raise BadRequest("The request body is too large.", 413, "request_too_large") from None


def _text(body):
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The body is not UTF-8: {exc.reason} at byte {exc.start}.") from None


def _body_parameters(request):
    if request.content_type == JSON:
        text = _text(_body(request))
        if not text.strip():
            raise BadRequest('The body is empty; send {"query": "<GraphQL>"}.')
        try:
            params = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise BadRequest(f"The body is not JSON: {exc}.") from None
        if not isinstance(params, dict):
            raise BadRequest('The body must be a JSON object: {"query": "<GraphQL>", "variables": {…}}.')
        return params
    if request.content_type == "application/graphql":
        return {"query": _text(_body(request))}
    raise BadRequest(f"Send the request as {JSON} (or application/graphql), not {request.content_type or 'nothing'}.",
                     415, "unsupported_media_type")


def _json_parameter(name, value):
    """A GET parameter that holds a JSON object (``variables``, ``extensions``)."""
    if value is None or not value.strip():
        return None
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        raise BadRequest(f"{name} is not JSON.") from None


def _checked(params):
    query, operation_name = params.get("query"), params.get("operationName")
    for name in ("variables", "extensions"):
        if params.get(name) is not None and not isinstance(params[name], dict):
            raise BadRequest(f"{name} must be a JSON object (or null).")
    try:  # a hash instead of (or with) the document: nautilus_core.persisted
        query, persist = persisted.resolve(query, params.get("extensions"))
    except persisted.PersistedQueryError as exc:
        raise BadRequest(str(exc), exc.status, exc.code) from None
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("The request needs a query: a string holding a GraphQL document.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("operationName must be a string (or null).")
    return GraphQLRequest(query, params.get("variables"), operation_name or None, params.get("extensions"), persist)


def _is_mutation(graphql_request):
    if len(graphql_request.query) > nautilus_settings.MAX_DOCUMENT_SIZE:
        return False  # refused as too large when it is run
    try:
        operation = get_operation_ast(parse(graphql_request.query), graphql_request.operation_name)
    except GraphQLError:
        return False  # reported when it is run
    return operation is not None and operation.operation != OperationType.QUERY


def response_of(result):
    """The body of an ExecutionResult: no ``data`` when it was refused before execution."""
    body = {} if isinstance(result, Refused) else {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return body


def refusal(exc):
    return {"errors": [{"message": str(exc), "extensions": {"code": exc.code}}]}


def render(request, body, status=None, refused=False, headers=None):
    """The HttpResponse of a GraphQL answer, in the media type the client accepts."""
    content_type = media_type(request)
    if status is None:
        status = 400 if refused and content_type == GRAPHQL_RESPONSE_JSON else 200
    return HttpResponse(json.dumps(body, cls=DjangoJSONEncoder), status=status, headers=headers,
                        content_type=f"{content_type}; charset=utf-8")


def respond(request, result, graphql_request=None):
    """``render`` of an ExecutionResult (of ``graphql_request``: a persisted query's document is kept now)."""
    if graphql_request is not None and graphql_request.persist is not None:
        persisted.remember(graphql_request.persist, graphql_request.query, isinstance(result, Refused))
    return render(request, response_of(result), refused=isinstance(result, Refused))


def respond_bad_request(request, exc):
    """A BadRequest's answer; one without a status (PersistedQueryNotFound) is a refused GraphQL request."""
    return render(request, refusal(exc), status=exc.status, refused=True, headers=exc.headers)
