"""The operations of one ``graphql-transport-ws`` connection (``gateway.subscriptions``).

``subscribe`` checks the message and the document (parse, validation, ``nautilus_core.limits``),
then a query or mutation is answered once (``next``, ``complete``) and a subscription is
followed: each event the bus brings (``gateway.events``) waits in a ``Follower`` until it is
resolved for the caller (``gateway.live``) and sent as ``next``.

Back-pressure: the events waiting are counted per connection; past
``NAUTILUS_SUBSCRIPTION_BUFFER`` the connection is closed with ``TOO_SLOW`` (4413) and its
events dropped, so a slow client costs at most that many events.
"""
import asyncio
import logging
from collections import deque

from asgiref.sync import sync_to_async
from graphql import ExecutionResult, OperationType, get_operation_ast, subscribe

from nautilus_core.conf import nautilus_settings
from nautilus_core.graphql import Refused, check_document

from .events import hub
from .live import LiveContext

__all__ = ["Operations", "Follower", "Close", "TOO_SLOW"]

logger = logging.getLogger(__name__)

TOO_SLOW = 4413  # not one of the protocol's fatal codes: a graphql-ws client with retries connects again


class Close(Exception):
    """Raised while a message is handled: close the connection with ``code`` and ``reason``."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code, self.reason = code, reason


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


class Operations:
    """``subscribe`` and what follows it, for ``gateway.subscriptions.Connection``."""

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
