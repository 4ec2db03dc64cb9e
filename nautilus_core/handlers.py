"""The ASGI handler of a service's HTTP API: Django's, with ``/graphql`` bodies capped.

Django reads a whole request body (into memory, then a temporary file) before a view runs.
A ``/graphql`` body over ``MAX_REQUEST_SIZE`` bytes is answered 413 instead: at once when its
``Content-Length`` says so, else as soon as a chunked body grows over it, before the rest is
read. Other paths keep Django's own limits.
"""
from django.core.handlers.asgi import ASGIHandler

from .conf import nautilus_settings

__all__ = ["ServiceASGIHandler"]


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


class ServiceASGIHandler(ASGIHandler):
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
