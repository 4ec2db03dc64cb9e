"""Schema checks before deploy: a service's schema as the gateway will serve it, compared with another.

``manage.py schema print`` writes a service's part of the gateway's schema (its type, its query
field, its mutations) as SDL; ``manage.py schema check`` compares it with the same major running in
the cloud (read from the announcements that answer a roll call) or with an SDL file written by
``schema print`` (``--against``), with graphql-core's ``find_breaking_changes`` and
``find_dangerous_changes``: the same comparison the gateway makes before it accepts an announcement
(``gateway/versions.py``).
"""
import socket
import time
import uuid
from types import SimpleNamespace

from graphql import build_schema as parse_sdl
from graphql import find_breaking_changes, find_dangerous_changes, print_schema
from kombu import Consumer, Queue

from .actions import ANNOUNCE
from .bus import actions_exchange, envelope_of_task_message
from .versions import api_version_of

__all__ = ["service_schema", "sdl_of", "schema_of_sdl", "running_summaries", "newest_of_major", "compare"]


def _schema_of_summary(summary):
    from gateway.registry import Snapshot
    from gateway.schema import build_schema

    snapshot = Snapshot(connections={summary["name"]: summary}) if summary.get("connection") \
        else Snapshot(models={summary["name"]: summary})
    # no gateway's rules: no owner inputs hidden, no user mutations; what the service itself offers
    return build_schema(snapshot, SimpleNamespace(user_service=None, owners={})).graphql_schema


def service_schema(service, summary=None):
    """The GraphQLSchema the gateway serves for ``service`` (a gateway: the whole cloud's, from its registry)."""
    if hasattr(service, "current_schema"):
        return service.current_schema()[1].graphql_schema
    return _schema_of_summary(summary or service.summarize())


def sdl_of(schema):
    return print_schema(schema) + "\n"


def schema_of_sdl(text):
    """A GraphQLSchema from SDL text; ValueError naming the problem."""
    try:
        return parse_sdl(text)
    except Exception as exc:  # graphql-core's syntax and schema errors
        raise ValueError(f"not a GraphQL schema: {exc}") from None


def running_summaries(app, bus, name, wait=3.0, exchange="nautilus.actions"):
    """The summaries of ``name`` announced within ``wait`` seconds of a roll call on the bus."""
    from .actions import ROLL_CALL

    queue = Queue(f"nautilus.schema-check.{uuid.uuid4().hex}", exchange=actions_exchange(exchange),
                  routing_key=ANNOUNCE, durable=False, auto_delete=True)
    found = []

    def on_message(body, message):
        envelope = envelope_of_task_message(body)
        payload = envelope.get("payload") if isinstance(envelope, dict) else None
        if isinstance(payload, dict) and payload.get("name") == name and "fields" in payload:
            found.append(payload)

    with app.connection_for_read() as connection:
        channel = connection.channel()
        queue(channel).declare()
        with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"], no_ack=True):
            bus.publish(ROLL_CALL, {})
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=min(0.2, max(0.01, deadline - time.monotonic())))
                except socket.timeout:
                    continue
    return found


def newest_of_major(summaries, major):
    """The summary of ``major`` with the highest minor (what the gateway serves for it), or None."""
    candidates = []
    for summary in summaries:
        try:
            version = api_version_of(summary)
        except ValueError:
            continue
        if version[0] == major:
            candidates.append((version[1], summary))
    return max(candidates, key=lambda item: item[0])[1] if candidates else None


def compare(old, new):
    """``(breaking, dangerous)``: the descriptions of the changes from ``old`` to ``new`` (GraphQLSchemas).

    Both are read back from their SDL first: graphql-core tells types apart by their Python class,
    and graphene's scalars are of another class than the same scalars read from a file.
    """
    old, new = parse_sdl(print_schema(old)), parse_sdl(print_schema(new))
    return ([change.description for change in find_breaking_changes(old, new)],
            [change.description for change in find_dangerous_changes(old, new)])
