"""The cloud as the gateway knows it, from the services' announcements.

The gateway's worker records each announcement in the database; every gateway process
(HTTP or worker) reads the registry from there, at most once per ``REGISTRY_REFRESH``
seconds, so a re-announced service shows up in the schema without a restart. It keeps one summary
per service and API major; which one each path serves is ``gateway/versions.py``.

A service that announces a ``heartbeat`` (seconds between its announcements) and then
misses ``NAUTILUS["HEARTBEATS_MISSED"]`` of them is *unavailable*: its fields answer
``service_unavailable`` at once instead of waiting for an ask to time out. Silent for
``NAUTILUS["DEPARTED_AFTER"]`` seconds, it has *departed*: it leaves the schema (until it
announces itself again). A service that announces no heartbeat (an older peer) is never
judged by its silence.
"""
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from nautilus_core.actions import MalformedAction
from nautilus_core.conf import nautilus_settings
from nautilus_core.types import SCALARS
from nautilus_core.versions import summary_problem

__all__ = ["Registry", "Snapshot", "validate_summary", "registry"]


@dataclass(frozen=True)
class Snapshot:
    """The summaries known at one moment: model services, connections, and every mutation."""

    models: dict = field(default_factory=dict)
    connections: dict = field(default_factory=dict)
    #: ``{name: datetime of its last announcement}`` (not part of the key: a heartbeat changes no schema)
    seen: dict = field(default_factory=dict, compare=False)

    @property
    def key(self):
        """Changes whenever any summary does: the schema is rebuilt on a new key."""
        return tuple(sorted((name, s.get("version", "")) for name, s in {**self.models, **self.connections}.items()))

    @property
    def mutations(self):
        found = {}
        for summary in [*self.models.values(), *self.connections.values()]:
            for mutation in summary.get("mutations", ()):
                found.setdefault(mutation["name"], mutation)
        return found

    def with_summary(self, summary):
        """This snapshot with ``summary`` recorded (to try a new announcement before keeping it)."""
        name = summary["name"]
        models = {key: value for key, value in self.models.items() if key != name}
        connections = {key: value for key, value in self.connections.items() if key != name}
        (connections if summary.get("connection") else models)[name] = summary
        return Snapshot(models=models, connections=connections, seen=self.seen)

    def service(self, name):
        return self.models.get(name) or self.connections.get(name)

    def silence(self, name):
        """Seconds ``name`` has been silent once it missed its heartbeats; None while it keeps them."""
        summary, seen = self.service(name), self.seen.get(name)
        if not summary or not summary.get("heartbeat") or seen is None:
            return None
        silent = (timezone.now() - seen).total_seconds()
        return silent if silent > summary["heartbeat"] * nautilus_settings.HEARTBEATS_MISSED else None

    def state(self, name):
        """``"up"`` or ``"unavailable"`` (missed its heartbeats)."""
        return "unavailable" if self.silence(name) is not None else "up"

    def pk_of(self, name, record):
        """A record's primary key, by the field its service announced as ``pk``."""
        return record.get((self.service(name) or {}).get("pk", "id"))


def validate_summary(summary):
    """Refuse an announcement the gateway could not build a schema from, with the reason."""
    def fail(reason):
        raise MalformedAction(f"announcement refused: {reason}", summary)

    if not isinstance(summary.get("name"), str) or not summary["name"].isidentifier():
        fail("the summary needs a name that is an identifier")
    for item in summary.get("fields", []):
        if not isinstance(item, dict) or not str(item.get("name", "")).isidentifier() \
                or item.get("type") not in SCALARS:
            fail(f"bad field {item!r} (types: {', '.join(SCALARS)})")
    for mutation in summary.get("mutations", []):
        if not isinstance(mutation, dict) or not str(mutation.get("name", "")).isidentifier() \
                or not isinstance(mutation.get("event"), str):
            fail(f"bad mutation {mutation!r}")
    heartbeat = summary.get("heartbeat")
    if heartbeat is not None and (isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float))
                                  or not 0 < heartbeat < 86400):
        fail(f"the heartbeat must be a number of seconds between 0 and a day, not {heartbeat!r}")
    connection = summary.get("connection")
    problem = summary_problem(summary)  # api_version, deprecation reasons (nautilus_core.versions)
    if problem:
        fail(problem)
    if connection is not None and not all(
            isinstance(connection.get(end), dict) and isinstance(connection[end].get("service"), str)
            for end in ("from", "to")):
        fail("a connection names a service at each end: {'from': {'service': …}, 'to': {'service': …}}")


class Registry:
    def __init__(self, refresh=1.0):
        self.refresh = refresh
        self._lock = threading.Lock()
        self._catalog, self._read_at = None, 0.0

    def record(self, summary):
        """Keep the newest summary of a service's major; a service without fields (a gateway) is not a model."""
        from .models import ServiceSummary
        from .versions import registry_key

        validate_summary(summary)
        if "fields" not in summary:
            return
        ServiceSummary.objects.update_or_create(
            name=registry_key(summary), defaults={"summary": summary, "version": summary.get("version", "")})
        self.invalidate()

    def touch(self, summary):
        """A replica of an older minor announced itself: its major is alive, its summary is not kept."""
        from .models import ServiceSummary
        from .versions import registry_key

        ServiceSummary.objects.filter(name=registry_key(summary)).update(announced_at=timezone.now())
        self.invalidate()

    def invalidate(self):
        with self._lock:
            self._read_at = 0.0

    def fresh(self, major=None):
        """The snapshot if it is recent enough to use without a database read, else None."""
        catalog = self._catalog
        if catalog is not None and time.monotonic() - self._read_at <= self.refresh:
            return catalog.view(major)
        return None

    def snapshot(self, major=None):
        """The registry as of at most ``refresh`` seconds ago (a database read when older), as ``/graphql``
        serves it, or ``/v<major>/graphql`` (``gateway.versions``: VersionNotServed when nobody serves it)."""
        return self.catalog().view(major)

    def catalog(self):
        """Every summary by service and major (``gateway.versions.Catalog``), at most ``refresh`` seconds old."""
        with self._lock:
            if self._catalog is None or time.monotonic() - self._read_at > self.refresh:
                self._catalog, self._read_at = self._read(), time.monotonic()
            return self._catalog

    @staticmethod
    def _read():
        from .models import ServiceSummary
        from .versions import Catalog

        # silent for too long: departed, gone from the schema until it announces itself again
        departed = timezone.now() - timedelta(seconds=nautilus_settings.DEPARTED_AFTER)
        return Catalog.from_rows(ServiceSummary.objects.all(), departed)


registry = Registry()
