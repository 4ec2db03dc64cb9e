"""The gateway's ASGI handler: ``/graphql`` without Django's thread-hopping middleware chain.

Under ASGI every ``MiddlewareMixin`` middleware (security, sessions, CSRF, auth, messages…)
runs its ``process_request``/``process_response`` in a thread, a dozen hops per request. The
GraphQL endpoint needs none of them (it is CSRF-exempt and authenticates by bearer token),
so it runs behind CORS alone; every other path (admin, index, static files) keeps the full
chain. Django still creates the request, sends its signals and writes the response.
"""
from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.urls import set_urlconf

from .views import graphql

__all__ = ["GatewayASGIHandler"]


class GatewayASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self._graphql_chain = CorsMiddleware(graphql)

    async def get_response_async(self, request):
        if request.path != "/graphql" or "text/html" in request.headers.get("Accept", ""):
            return await super().get_response_async(request)  # GraphiQL pages too: full chain
        set_urlconf(settings.ROOT_URLCONF)
        response = await self._graphql_chain(request)
        response._resource_closers.append(request.close)
        return response
