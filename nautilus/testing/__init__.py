"""nautilus's test kit: from one handler to a whole cloud (the README's "Testing a service").

The ladder, after Nameko's ``worker_factory`` / ``entrypoint_waiter``:

1. ``handle(service, action_type, payload)``: call a handler directly (in the test's
   database transaction); the outcome Action, or None.
2. ``MemoryBus(service)``: the service on an in-memory bus (the real messages, acks and
   redelivery), with faults (duplicate, drop, delay, reorder). No broker needed.
3. ``ServiceProcess`` + ``BusRecorder``: the service's worker (and HTTP server) as child
   processes on RabbitMQ; record what it published, wait for an action.
4. ``nautilus_cloud`` (pytest fixture): services and a gateway, queried over HTTP;
   ``BrokerProxy`` cuts the broker connection to test an outage.

The pytest plugin (``nautilus.testing.plugin``, loaded by pytest when nautilus is
installed) has the fixtures: ``nautilus_memory_bus``, ``nautilus_broker_url``,
``nautilus_databases``, ``nautilus_service``, ``nautilus_cloud``, ``nautilus_recorder``
and ``nautilus_broker_proxy``.
"""
import json
import urllib.error
import urllib.parse
import urllib.request

from nautilus_core.actions import Action
from nautilus_core.testing import BrokerProxy, BusRecorder, Databases, ServiceProcess, free_port, virtual_host

from .memory import MemoryBus, NoReply

__all__ = ["handle", "graphql", "MemoryBus", "NoReply", "ServiceProcess", "BusRecorder", "BrokerProxy", "Databases",
           "virtual_host", "free_port"]


def handle(service, action_type, payload=None):
    """Run ``service``'s handler of ``action_type`` on ``payload``; return the outcome Action (or None).

    The handler runs as on the bus (recorded in its transaction), without a broker; what it
    would publish is not sent. ``KeyError`` if the service does not handle ``action_type``.
    """
    handler = service.handlers.get(action_type)
    if handler is None:
        raise KeyError(f"{service.name} does not handle {action_type}; it handles {sorted(service.handlers)}")
    return service.perform(handler, Action(action_type=action_type, payload=payload or {}, sender="test"))


def graphql(url, query, variables=None, operation_name=None, headers=None, method="POST"):
    """POST (or GET) a GraphQL request to ``url``'s ``/graphql``; return ``(status, body as JSON)``."""
    params = {"query": query, "variables": variables, "operationName": operation_name}
    if method == "GET":
        query_string = urllib.parse.urlencode(
            {k: json.dumps(v) if k == "variables" else v for k, v in params.items() if v is not None})
        request = urllib.request.Request(f"{url}/graphql?{query_string}", headers={"Accept": "application/json",
                                                                                  **(headers or {})})
    else:
        request = urllib.request.Request(f"{url}/graphql", data=json.dumps(params).encode(), method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
