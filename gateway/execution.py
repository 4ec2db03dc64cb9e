"""How the gateway asks services while it executes one GraphQL request.

A QueryContext lives for one request. Rows are loaded through DataLoaders keyed by
service and filters, so all the rows a level of the query needs from one service come
in one ask (``pk_in``), whatever the number of parents: a query of depth d costs at
most d+1 asks per service. A request has one time budget (``NAUTILUS_ASK_TIMEOUT``) that
its asks share: each ask's deadline is the request's, so a later ask gets what is left. A
service that does not answer, or answers ``.error``, or that nobody runs, becomes a GraphQL
error at that field while the rest resolves.
"""
import json
import time
import uuid

from aiodataloader import DataLoader
from graphql import GraphQLError
from kombu.exceptions import OperationalError

from nautilus_core.actions import ERROR, status_of
from nautilus_core.bus import AskTimeout, NoHandler
from nautilus_core.conf import nautilus_settings
from nautilus_core.filters import argument_types
from nautilus_core.types import json_value
from nautilus_core.versions import major_of

from .authorization import read_rule
from .cache import changed_by_gateway, read_through
from .scope import join_request_scope

# action ids derived from a client's Idempotency-Key (uuid5 under this namespace)
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d2f0c-4a51-4d59-9a3e-2f6b0c8e7a11")
IDEMPOTENCY_KEY_LENGTH = 255

__all__ = ["QueryContext", "read_query", "page"]

def read_query(summary, filters, fields=None):
    """``query Read($…) { all_models(…) { pk <fields> } }`` with the filters as variables."""
    types = argument_types((f["name"], f["type"]) for f in summary["fields"])
    definitions = ", ".join(f"${name}: {types[name]}" for name in filters)
    arguments = ", ".join(f"{name}: ${name}" for name in filters)
    selection = " ".join(["pk", *(fields or [f["name"] for f in summary["fields"]])])
    if not filters:
        return f"query Read {{ all_models {{ {selection} }} }}"
    return f"query Read({definitions}) {{ all_models({arguments}) {{ {selection} }} }}"


def page(rows, first=None, last=None, offset=None, order_by=None):
    """The paging filters of a service, applied to one parent's child rows."""
    def sort_key(name):
        return lambda row: (row.get(name) is None, row.get(name) if name != "pk" else _pk_order(row["pk"]))

    for name, value in (("first", first), ("last", last), ("offset", offset)):  # as model_service.filters says
        if value is not None and value < 0:
            raise GraphQLError(f"{name} must not be negative.")
    if first is not None and last is not None:
        raise GraphQLError("first and last cannot be used together.")
    rows = sorted(rows, key=sort_key("pk"))
    for entry in reversed(order_by or []):
        rows.sort(key=sort_key(entry.lstrip("+-")), reverse=entry.startswith("-"))
    if last is not None:
        rows = rows[::-1]
    rows = rows[offset or 0:]
    limit = first if first is not None else last
    rows = rows[:limit] if limit is not None else rows
    return rows[::-1] if last is not None else rows


def _pk_order(pk):
    return (0, int(pk), "") if str(pk).isdigit() else (1, 0, str(pk))


class QueryContext:
    """Per-request state: the snapshot the schema was built from, the loaders, the asks made."""

    def __init__(self, gateway, snapshot, user=None, request=None, obey_auth=True):
        self.gateway = gateway
        self.snapshot = snapshot
        self.user = user  # the session token's claims, or None
        self.request = request
        self.obey_auth = obey_auth
        self.budget = gateway.ask_timeout
        self.deadline = time.monotonic() + self.budget  # shared by every ask of the request
        self._loaders = {}
        self.asks = 0  # made so far; at most MAX_ASKS (the limits check estimates them before execution too)

    @property
    def user_id(self):
        return str(self.user["user_id"]) if self.user and self.user.get("user_id") is not None else None

    def idempotent_action_id(self, mutation_name, payload, service):
        """The action id of a mutation under the request's ``Idempotency-Key`` header (None without one).

        The same key, caller, mutation, arguments and major of the service give the same id, so a
        client that retries a mutation it was told failed (``service_unavailable``…) with the same
        key gets the first try's answer from the service's record, and the change is never made
        twice. Two majors are two APIs: the same key at ``/v1/graphql`` and ``/graphql`` names two
        actions (each major's replicas may keep their records apart, and answer in shapes of their own).
        """
        key = self.request.headers.get("Idempotency-Key") if self.request is not None else None
        if key is None:
            return None
        if not key or len(key) > IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
            raise GraphQLError(f"The Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_LENGTH} printable "
                               "characters.", extensions={"code": "invalid_idempotency_key"})
        major = major_of(self.snapshot.service(service))
        identity = json.dumps([self.user_id, mutation_name, payload] + ([major] if major != 1 else []),
                              sort_keys=True, default=str)  # major 1 as before: its keys name the same actions
        return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{key}\n{identity}"))

    async def ask(self, action_type, payload, undo=False, action_id=None):
        """Ask a service; its ``.error`` or its silence becomes a GraphQL error naming it.

        An ``undo`` (the compensation of a change the request made) gets a whole budget of its own:
        it must not be skipped because the request's ran out. Any ask but a read may change the
        service: its cached answers go when it is answered (or fails), before the request goes on.
        """
        if action_type.startswith("read."):
            return await self._ask(action_type, payload, undo, action_id)
        try:
            return await self._ask(action_type, payload, undo, action_id)
        finally:
            changed_by_gateway(action_type.split(".")[1])

    async def _ask(self, action_type, payload, undo, action_id):
        service = action_type.split(".")[1]
        self.asks += 1
        if self.asks > nautilus_settings.MAX_ASKS:
            raise GraphQLError(f"The query asked services more than {nautilus_settings.MAX_ASKS} times.",
                               extensions={"code": "too_many_asks", "limit": nautilus_settings.MAX_ASKS})
        join_request_scope()  # a client that goes away cancels this ask
        silence = self.snapshot.silence(service)
        if silence is not None:  # it missed its heartbeats: say so now rather than after a timeout
            raise GraphQLError(f"The {service} service is unavailable: it has not announced itself for "
                               f"{silence:.0f}s.", extensions={"code": "service_unavailable", "service": service})
        left = self.budget if undo else self.deadline - time.monotonic()
        if left <= 0:
            raise GraphQLError(f"The request's time budget ({self.budget:g}s) ran out before the {service} service "
                               "was asked.", extensions={"code": "deadline_exceeded", "service": service})
        try:
            reply = await self.gateway.bus.ask_async(action_type, payload, timeout=left, action_id=action_id,
                                                     major=major_of(self.snapshot.service(service)))
        except AskTimeout as exc:
            if exc.outcome_known or action_type.startswith("read."):  # past its deadline it will not be applied
                raise GraphQLError(f"The {service} service did not answer within {self.budget:g}s.",
                                   extensions={"code": "service_unavailable", "service": service}) from None
            raise GraphQLError(f"The {service} service did not answer within {self.budget:g}s, and the gateway lost "
                               "its connection to the bus meanwhile: the change may have been made.",
                               extensions={"code": "outcome_unknown", "service": service}) from None
        except NoHandler as exc:
            raise GraphQLError(f"The {service} service is not running: {exc}.",
                               extensions={"code": "no_handler", "service": service}) from None
        except (OSError, OperationalError) as exc:  # the broker is away: unavailable, not a crash
            raise GraphQLError(f"The {service} service is unavailable: the bus cannot be reached ({exc}).",
                               extensions={"code": "service_unavailable", "service": service}) from None
        if status_of(reply.action_type) == ERROR:
            raise GraphQLError(reply.payload.get("message", f"{action_type} failed"), extensions={
                "code": reply.payload.get("code", "error"), "service": service,
                "details": reply.payload.get("details", {})})
        return reply.payload

    async def read(self, service, filters, fields=None, as_caller=True):
        """One ask for the rows of ``service`` matching ``filters`` (``as_caller``: that the caller may read)."""
        summary = self.snapshot.service(service)
        variables = {name: json_value(value) for name, value in filters.items()}
        payload = {"query": read_query(summary, variables, fields), "variables": variables}
        where = read_rule(self, service) if as_caller else None
        if where is not None:
            payload["where"] = where  # the service pages within it (gateway/authorization.py)
        result = await read_through(self, service, payload)  # gateway/cache.py: maybe not asked again
        if result.get("errors"):
            raise GraphQLError(result["errors"][0]["message"], extensions={"service": service})
        return result["data"]["all_models"]

    def rows(self, service, filters):
        """Loader of ``service`` rows by pk, under non-paging ``filters``."""
        key = ("rows", service, tuple(sorted((k, repr(v)) for k, v in filters.items())))
        if key not in self._loaders:
            async def load(pks):
                found = {str(row["pk"]): row for row in await self.read(service, {**filters, "pk_in": list(pks)})}
                return [found.get(pk) for pk in pks]

            self._loaders[key] = DataLoader(load)
        return self._loaders[key]

    def linked_ids(self, link):
        """Loader of the ids a connection links to each source id."""
        key = ("link", link)
        if key not in self._loaders:
            async def load(source_ids):
                rows = await self.read(link.connection, {f"{link.source_column}_in": list(source_ids)},
                                       fields=[link.source_column, link.target_column])
                linked = {source_id: [] for source_id in source_ids}
                for row in rows:
                    linked.setdefault(str(row[link.source_column]), []).append(str(row[link.target_column]))
                return [linked[source_id] for source_id in source_ids]

            self._loaders[key] = DataLoader(load)
        return self._loaders[key]
