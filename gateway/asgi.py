"""The gateway's ASGI handler: ``/graphql`` without Django's thread-hopping middleware chain.

Under ASGI every ``MiddlewareMixin`` middleware (security, sessions, CSRF, auth, messages…)
runs its ``process_request``/``process_response`` in a thread, a dozen hops per request. The
GraphQL endpoint needs none of them (it is CSRF-exempt and authenticates by bearer token),
so it runs behind CORS and its trace (``nautilus_core.tracing``) alone, with the check of the
chain it does need done here:
``ALLOWED_HOSTS`` (a 400 for another ``Host``); its body is capped as every service's is
(``nautilus_core.handlers``). Every other path (admin, index, static files, the GraphiQL
page) keeps the full chain. Django still creates the request, sends its signals and writes
the response. A WebSocket to ``/graphql`` is a subscription client (``gateway/subscriptions.py``).
"""
from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpResponseBadRequest
from django.urls import set_urlconf

from nautilus_core import http
from nautilus_core.handlers import ServiceASGIHandler
from nautilus_core.tracing import TraceMiddleware

from .cache import read_cache
from .views import graphql

__all__ = ["GatewayASGIHandler"]


class GatewayASGIHandler(ServiceASGIHandler):
    def __init__(self):
        super().__init__()
        self._graphql_chain = CorsMiddleware(TraceMiddleware(graphql))
        read_cache()  # follows the bus from the start, so its first reads may be kept

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":  # subscriptions (graphql-transport-ws) on the same port as /graphql
            from .subscriptions import serve

            return await serve(scope, receive, send)
        return await super().__call__(scope, receive, send)

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
