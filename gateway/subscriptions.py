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
from collections import deque

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http.request import split_domain_port, validate_host
from graphql import ExecutionResult, GraphQLError, OperationType, get_operation_ast, subscribe

from nautilus_core.conf import nautilus_settings
from nautilus_core.graphql import Refused, check_document
from nautilus_core.service import get_service

from .auth import read_session
from .events import hub
from .live import LiveContext

__all__ = ["PROTOCOL", "serve", "Connection"]

logger = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
TOO_SLOW = 4413  # not one of the protocol's fatal codes: a graphql-ws client with retries connects again


class Close(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code, self.reason = code, reason


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


def _result(result):
    body = {} if isinstance(result, Refused) else {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return body


class Follower:
    """The events of one ``(method, service)`` for one operation, waiting in its connection's buffer."""

    def __init__(self, connection, method, service):
        self.connection, self.method, self.service = connection, method, service
        self.events = deque()
        self._wake = asyncio.Event()
        self.closed = False
        hub.subscribe(method, service, self)

    def offer(self, event):
        if self.closed:
            return
        if self.connection.pending >= nautilus_settings.SUBSCRIPTION_BUFFER:
            self.connection.too_slow()
            return
        self.events.append(event)
        self.connection.pending += 1
        self._wake.set()

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self.events:
            if self.closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        self.connection.pending -= 1
        return self.events.popleft()

    def close(self):
        if not self.closed:
            self.closed = True
            hub.unsubscribe(self.method, self.service, self)
            self.connection.pending -= len(self.events)
            self.events.clear()
            self._wake.set()


class Connection:
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

    async def subscribe(self, operation_id, payload):
        if not self.acked:
            raise Close(4401, "Unauthorized")
        if not isinstance(operation_id, str) or not operation_id:
            raise Close(4400, "Invalid message received: subscribe needs an id")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str) \
                or not isinstance(payload.get("variables"), (dict, type(None))) \
                or not isinstance(payload.get("operationName"), (str, type(None))) \
                or not isinstance(payload.get("extensions"), (dict, type(None))):
            raise Close(4400, "Invalid message received: subscribe needs a payload {query, variables?, "
                              "operationName?}")
        if operation_id in self.operations:
            raise Close(4409, f"Subscriber for {operation_id[:60]} already exists")
        limit = nautilus_settings.SUBSCRIPTIONS_PER_CONNECTION
        if len(self.operations) >= limit:
            return await self.send_error(operation_id, [{
                "message": f"A connection runs at most {limit} operations at once.",
                "extensions": {"code": "too_many_subscriptions", "limit": limit}}])
        self.operations[operation_id] = None
        try:
            stream, context = await self._start(operation_id, payload)
        except BaseException:
            self.operations.pop(operation_id, None)
            raise
        if stream is None:
            self.operations.pop(operation_id, None)
        elif operation_id in self.operations and not self.closed:
            self.operations[operation_id] = asyncio.ensure_future(self._pump(operation_id, stream, context))
        else:  # completed, or the connection closed, while it was set up
            context.follower and context.follower.close()

    async def _start(self, operation_id, payload):
        """The event stream of a subscription (with its context); ``(None, None)`` when it is answered already."""
        query, variables, name = payload["query"], payload.get("variables"), payload.get("operationName")
        snapshot, schema = await sync_to_async(self.gateway.current_schema)()
        hub.snapshot = snapshot
        document, refused = check_document(schema.graphql_schema, query, variables)
        if refused:
            await self.send_error(operation_id, [error.formatted for error in refused.errors])
            return None, None
        operation = get_operation_ast(document, name)
        if operation is not None and operation.operation != OperationType.SUBSCRIPTION:
            result = await self.gateway.execute(query, variables, name, user=self.user)
            if isinstance(result, Refused):
                await self.send_error(operation_id, [error.formatted for error in result.errors])
            else:
                await self.send_json({"id": operation_id, "type": "next", "payload": _result(result)})
                await self.send_json({"id": operation_id, "type": "complete"})
            return None, None
        context = LiveContext(self.gateway, snapshot, self, user=self.user)
        stream = await subscribe(schema.graphql_schema, document, context_value=context, variable_values=variables,
                                 operation_name=name)
        if isinstance(stream, ExecutionResult):
            context.follower and context.follower.close()
            await self.send_error(operation_id, [error.formatted for error in stream.errors or ()])
            return None, None
        return stream, context

    async def _pump(self, operation_id, stream, context):
        try:
            async for result in stream:
                await self.send_json({"id": operation_id, "type": "next", "payload": _result(result)})
            if not self.closed:
                await self.send_json({"id": operation_id, "type": "complete"})
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("subscription %s failed", operation_id)
            if not self.closed:
                await self.send_error(operation_id, [{"message": "The subscription failed in the gateway.",
                                                      "extensions": {"code": "internal_error"}}])
        finally:
            if context.follower is not None:
                context.follower.close()
                self.followers.discard(context.follower)
            if self.operations.get(operation_id) is asyncio.current_task():
                del self.operations[operation_id]

    async def send_error(self, operation_id, errors):
        await self.send_json({"id": operation_id, "type": "error", "payload": errors})
