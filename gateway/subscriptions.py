"""GraphQL over WebSocket at the gateway's ``/graphql``: the ``graphql-transport-ws`` protocol.

The protocol of the ``graphql-ws`` client (Apollo Client, GraphiQL, gql…), as its PROTOCOL.md
says: the client opens with ``connection_init`` (within ``NAUTILUS_CONNECTION_INIT_TIMEOUT``
seconds, else 4408), whose payload may carry the session token (``{"Authorization": "Bearer
<sessionToken>"}``, or ``{"token": "<sessionToken>"}``); a bad one closes with 4403, a good one is
acknowledged (``connection_ack``). Then ``subscribe`` (``{"id", "payload": {"query", "variables",
"operationName"}}``) runs an operation: a subscription sends ``next`` per event until the client
sends ``complete``; a query or mutation sends one ``next`` then ``complete``; a document that does
not parse, validate or fit the limits (``nautilus_core.limits``) gets ``error``. ``ping`` gets
``pong``. A second ``connection_init`` closes with 4429, ``subscribe`` before the ack with 4401, an
id already running with 4409, a message that is not one of these (or not JSON, or binary) with
4400. A session that expires, is logged out or whose user goes ends the connection with 4403 (the
graphql-ws client then connects again, with the token its ``connectionParams`` give then).

Back-pressure: the events waiting to be resolved and sent are counted per connection; a
connection that lets more than ``NAUTILUS_SUBSCRIPTION_BUFFER`` wait (its client reads too
slowly, or subscribed to more than it can take) is closed with 4413 and its events dropped, so a
slow client costs at most that many events. It may connect again and read what it needs.
"""
import asyncio
import json
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http.request import split_domain_port, validate_host
from graphql import GraphQLError

from nautilus_core.conf import nautilus_settings
from nautilus_core.service import get_service

from .tokens import read_session
from .operations import TOO_SLOW, Close, Follower, Operations

__all__ = ["PROTOCOL", "serve", "Connection"]

logger = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"


async def serve(scope, receive, send):
    """The ASGI application of a WebSocket connection to the gateway."""
    await Connection(scope, receive, send).run()


def _host_allowed(scope):
    host = next((value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"host"), "")
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


def _authorization(payload):
    """The ``Authorization`` header value a ``connection_init`` payload carries (None without one)."""
    payload = payload or {}
    headers = payload.get("headers") if isinstance(payload.get("headers"), dict) else {}
    for source in (payload, headers):
        for key in ("Authorization", "authorization"):
            if key in source:
                return source[key] if isinstance(source[key], str) else ""
    for key in ("token", "sessionToken"):
        if key in payload:
            return f"Bearer {payload[key]}" if isinstance(payload[key], str) else ""
    return None


class Connection(Operations):
    """One WebSocket connection: its handshake, session, messages and close (its operations: ``Operations``)."""

    def __init__(self, scope, receive, send):
        self.scope, self.receive, self.send = scope, receive, send
        self.gateway = get_service()
        self.operations = {}  # id → the task sending its results (None while it is being set up)
        self.followers = set()
        self.pending = 0  # events waiting in this connection's followers
        self.init_received = self.acked = self.closed = False
        self.authorization = self.user = None
        self.session_checked = 0.0
        self._timers = []
        self._closing = None

    # -- the connection's life ---------------------------------------------------------

    async def run(self):
        if (await self.receive())["type"] != "websocket.connect":
            return
        if self.scope.get("path") != "/graphql" or not _host_allowed(self.scope):
            await self.send({"type": "websocket.close", "code": 1008})  # before accept: an HTTP 403
            return
        offered = self.scope.get("subprotocols") or ()
        await self.send({"type": "websocket.accept", **({"subprotocol": PROTOCOL} if PROTOCOL in offered else {})})
        if PROTOCOL not in offered:
            await self.send({"type": "websocket.close", "code": 4406, "reason": "Subprotocol not acceptable"})
            return
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(nautilus_settings.CONNECTION_INIT_TIMEOUT, self._init_timeout))
        try:
            while True:
                message = await self.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if self.closed:
                    continue
                try:
                    await self.handle(message)
                except Close as close:
                    self.close(close.code, close.reason)
        finally:
            self.closed = True
            self._stop()

    def _stop(self):
        for timer in self._timers:
            timer.cancel()
        for task in self.operations.values():
            if task is not None:
                task.cancel()
        for follower in list(self.followers):
            follower.close()

    def close(self, code, reason):
        """Close the connection (at once for the operations; the close frame as soon as it can be written)."""
        if self.closed:
            return
        self.closed = True
        self._stop()
        reason = reason.encode("utf-8")[:120].decode("utf-8", "ignore")  # a close reason is at most 123 bytes
        self._closing = asyncio.ensure_future(self._send_close(code, reason))

    async def _send_close(self, code, reason):
        try:
            await self.send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # already gone
            pass

    def _init_timeout(self):
        if not self.init_received:
            self.close(4408, "Connection initialisation timeout")

    def too_slow(self):
        logger.warning("a subscriber let %d events wait: its connection is closed", self.pending)
        self.close(TOO_SLOW, f"Too slow: {nautilus_settings.SUBSCRIPTION_BUFFER} events were waiting to be sent")

    def follow(self, method, service):
        follower = Follower(self, method, service)
        self.followers.add(follower)
        return follower

    async def session_valid(self):
        """Whether the caller's session still holds (looked at once a second at most); if not, close 4403."""
        if self.closed:
            return False
        if self.authorization is None or time.monotonic() - self.session_checked < 1.0:
            return True
        try:
            await sync_to_async(read_session)(self.authorization)
        except GraphQLError as exc:
            self.close(4403, f"Forbidden: {exc.message}")
            return False
        self.session_checked = time.monotonic()
        return True

    async def send_json(self, message):
        await self.send({"type": "websocket.send", "text": json.dumps(message, cls=DjangoJSONEncoder)})

    # -- messages ----------------------------------------------------------------------

    async def handle(self, message):
        text = message.get("text")
        if text is None:
            raise Close(4400, "Send messages as text frames of JSON")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise Close(4400, "Invalid message received: not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise Close(4400, "Invalid message received: an object with a type is expected")
        kind = data["type"]
        if kind == "connection_init":
            await self.connection_init(data.get("payload"))
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self.subscribe(data.get("id"), data.get("payload"))
        elif kind == "complete":
            task = self.operations.pop(data.get("id"), None) if isinstance(data.get("id"), str) else None
            if task is not None:
                task.cancel()
        else:
            raise Close(4400, f"Invalid message received: unknown type {kind[:40]!r}")

    async def connection_init(self, payload):
        if self.init_received:
            raise Close(4429, "Too many initialisation requests")
        self.init_received = True
        if payload is not None and not isinstance(payload, dict):
            raise Close(4400, "Invalid message received: the connection_init payload must be an object")
        self.authorization = _authorization(payload)
        try:
            self.user = await self.gateway.session_of(self.authorization)
        except GraphQLError as exc:
            raise Close(4403, f"Forbidden: {exc.message}") from None
        self.session_checked = time.monotonic()
        if self.user and isinstance(self.user.get("exp"), (int, float)):
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(max(0.0, self.user["exp"] - time.time()), self.close, 4403,
                                                "Forbidden: the session token expired"))
        self.acked = True
        await self.send_json({"type": "connection_ack"})
