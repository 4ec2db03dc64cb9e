"""The gateway's ASGI handler: ``/graphql`` without Django's thread-hopping middleware chain.

Under ASGI every ``MiddlewareMixin`` middleware (security, sessions, CSRF, auth, messages…)
runs its ``process_request``/``process_response`` in a thread, a dozen hops per request. The
GraphQL endpoint needs none of them (it is CSRF-exempt and authenticates by bearer token),
so it runs behind CORS alone, with the two checks of the chain it does need done here:
``ALLOWED_HOSTS`` (a 400 for another ``Host``) and a body of at most ``MAX_REQUEST_SIZE``
bytes (a 413, from ``Content-Length`` or as soon as a chunked body grows over it, before
it is read further). Every other path (admin, index, static files, the GraphiQL page) keeps
the full chain. Django still creates the request, sends its signals and writes the response.
"""
from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponseBadRequest
from django.urls import set_urlconf

from nautilus_core import http
from nautilus_core.conf import nautilus_settings

from .views import graphql

__all__ = ["GatewayASGIHandler"]


class _TooLarge(Exception):
    pass


def _capped(receive, limit):
    """``receive`` that raises _TooLarge once the body has grown over ``limit`` bytes."""
    seen = 0

    async def receive_capped():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _TooLarge
        return message

    return receive_capped


def _declared_length(scope):
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class GatewayASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self._graphql_chain = CorsMiddleware(graphql)

    async def handle(self, scope, receive, send):
        if scope.get("path") != "/graphql":
            return await super().handle(scope, receive, send)
        limit = nautilus_settings.MAX_REQUEST_SIZE
        if (_declared_length(scope) or 0) > limit:
            return await self._too_large(send, limit)
        try:
            await super().handle(scope, _capped(receive, limit), send)
        except _TooLarge:  # raised while the body was read, before any response was started
            await self._too_large(send, limit)

    async def _too_large(self, send, limit):
        body = b'{"errors": [{"message": "The request body is over %d bytes.", ' \
               b'"extensions": {"code": "request_too_large"}}]}' % limit
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def get_response_async(self, request):
        if request.path != "/graphql" or http.wants_graphiql(request):
            return await super().get_response_async(request)  # GraphiQL pages too: full chain
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it on every other path
        except DisallowedHost:
            return HttpResponseBadRequest("Bad Request: this host is not served here.", content_type="text/plain")
        set_urlconf(settings.ROOT_URLCONF)
        response = await self._graphql_chain(request)
        response._resource_closers.append(request.close)
        return response
