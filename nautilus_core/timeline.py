"""The timeline of a trace across the cloud, from what each service recorded (``manage.py trace``).

``gather`` publishes one ``trace.service.pending`` query on the exchange; every service's queue
binds it, and each answers its ``TracedAction`` records to the query's reply queue (as many
answers as there are services: they are read for ``timeout`` seconds). ``timeline`` turns the
records into a tree: an action's children are the actions it caused (``caused_by``), under the
service that sent them; what a service published that no service recorded (an outcome nobody
listens to) appears under its cause with the sender's name and the status of its type.
"""
import socket
import time
import uuid
from datetime import datetime

from kombu import Consumer, Queue

from .actions import TRACE, status_of

__all__ = ["gather", "find", "timeline", "render"]


def gather(bus, payload, timeout):
    """Ask every service what it recorded (``payload``: ``{"id"}`` or ``{"trace_ids"}``); return
    ``(records, the names of the services that answered)``."""
    queue = Queue(f"nautilus.trace.{uuid.uuid4().hex}", durable=False, auto_delete=True,
                  queue_arguments={"x-expires": 60000})
    correlation_id = str(uuid.uuid4())
    answers = []

    def on_reply(body, message):
        if isinstance(body, dict) and body.get("correlation_id") == correlation_id:
            answers.append(body)

    with bus.app.connection_for_read() as connection:
        channel = connection.channel()
        with Consumer(channel, queues=[queue], callbacks=[on_reply], accept=["json"], no_ack=True):
            bus.publish(TRACE, payload, correlation_id=correlation_id, reply_to=queue.name)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    connection.drain_events(timeout=min(left, 0.25))
                except socket.timeout:
                    continue
    records, services = [], []
    for body in answers:
        reply = body.get("payload")
        if not (isinstance(reply, dict) and status_of(body.get("action_type") or "") == "success"):
            continue
        services.append(reply.get("service"))
        records.extend(r for r in reply.get("records") or () if isinstance(r, dict))
    return records, sorted(s for s in services if isinstance(s, str))


def find(bus, wanted, timeout):
    """The records of every trace ``wanted`` (an action, trace or correlation id) belongs to.

    One query finds the records that name it; when it is not a trace id, a second asks every
    service for the whole traces those records are part of.
    """
    records, services = gather(bus, {"id": wanted}, timeout)
    trace_ids = sorted({r["trace_id"] for r in records if r.get("trace_id")})
    if trace_ids and trace_ids != [wanted.lower()]:
        more, answered = gather(bus, {"trace_ids": trace_ids[:100]}, timeout)
        records, services = records + more, sorted(set(services) | set(answered))
    unique = {(r.get("service"), r.get("action_id"), r.get("attempt"), r.get("received_at")): r for r in records}
    return list(unique.values()), services


def _moment(text):
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return 0.0


def timeline(records):
    """The records as a forest of entries ``{service, action_id, action_type, status, time, duration_ms,
    trace_id, caused_by, attempt, children}``, ordered by time at every level."""
    entries = []
    for record in records:
        entries.append({
            "service": record.get("service"), "action_id": record.get("action_id"),
            "action_type": record.get("action_type"), "status": record.get("status"),
            "time": record.get("received_at"), "duration_ms": record.get("duration_ms"),
            "trace_id": record.get("trace_id"), "caused_by": record.get("caused_by"),
            "sender": record.get("sender"), "attempt": record.get("attempt") or 1, "children": [],
        })
    handled = {entry["action_id"] for entry in entries}
    for record in records:  # what was published and recorded by nobody: known from its sender's record
        for sent in record.get("published") or ():
            if isinstance(sent, dict) and sent.get("action_id") not in handled:
                handled.add(sent.get("action_id"))
                entries.append({
                    "service": record.get("service"), "action_id": sent.get("action_id"),
                    "action_type": sent.get("action_type"), "status": status_of(sent.get("action_type") or ""),
                    "time": sent.get("sent_at"), "duration_ms": None, "trace_id": record.get("trace_id"),
                    "caused_by": record.get("action_id"), "sender": record.get("service"), "attempt": 1,
                    "children": []})
    entries.sort(key=lambda entry: (_moment(entry["time"]), entry["attempt"]))
    by_action = {}
    for entry in entries:
        by_action.setdefault(entry["action_id"], []).append(entry)
    roots = []
    for entry in entries:
        causes = by_action.get(entry["caused_by"]) if entry["caused_by"] else None
        if not causes:
            roots.append(entry)
            continue
        # under the cause's handling by the service that sent this one (its last attempt), else the last
        senders = [cause for cause in causes if cause["service"] == entry["sender"]]
        (senders or causes)[-1]["children"].append(entry)
    return roots


def render(roots, *, indent="  "):
    """The timeline as text: one line per entry, its children indented under it."""
    lines = []

    def walk(entry, depth):
        moment = _moment(entry["time"])
        clock = datetime.fromtimestamp(moment).strftime("%H:%M:%S.%f")[:-3] if moment else "?" * 12
        duration = f"{entry['duration_ms']:.1f} ms" if entry["duration_ms"] is not None else "-"
        attempt = f" (attempt {entry['attempt']})" if entry["attempt"] > 1 else ""
        lines.append(f"{clock}  {indent * depth}{entry['action_type']}  {entry['service']}  "
                     f"{entry['status']}{attempt}  {duration}  {entry['action_id']}")
        for child in entry["children"]:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)

