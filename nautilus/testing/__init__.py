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
from nautilus_core.actions import Action
from nautilus_core.testing import BrokerProxy, BusRecorder, Databases, ServiceProcess, free_port, virtual_host

from .memory import MemoryBus, NoReply

__all__ = ["handle", "MemoryBus", "NoReply", "ServiceProcess", "BusRecorder", "BrokerProxy", "Databases",
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
