"""The gateway and API versions: one summary per service and major, a schema per path, checked announcements.

The registry keeps one row per service *and major* (``recipe`` for major 1, as before versions;
``recipe.v2`` for major 2: a dot is in no service name). From those rows a ``Catalog`` makes the
snapshot each path serves:

- ``/graphql``: every service at its newest major that still announces itself;
- ``/v<N>/graphql``: every service at its newest major up to N. The path exists while some service
  announces major N; once the last replica of a major N stops announcing (it departed, see
  ``gateway.registry``), the path answers ``version_retired`` (HTTP 410) naming the versions still served.

Within one major an announcement must not break the schema the gateway serves for it
(graphql-core's ``find_breaking_changes``): it is refused with each breaking change named, and
the old summary stays; dangerous changes are logged. A lower minor than the one served (a replica
not yet replaced in a rolling deploy) counts as a heartbeat of that major and changes nothing.
"""
import logging
from dataclasses import dataclass, field

from graphql import find_breaking_changes, find_dangerous_changes

from nautilus_core.actions import MalformedAction
from nautilus_core.versions import api_version_of, major_of, queue_name

from .registry import Snapshot, registry, validate_summary
from .schema import build_schema

__all__ = ["Catalog", "VersionNotServed", "registry_key", "admit", "schema_changes"]

logger = logging.getLogger(__name__)

#: breaking changes named in a refusal's reason (all of them are logged)
NAMED_CHANGES = 20


def registry_key(summary):
    """The registry row of a summary: its name for major 1, ``<name>.v<N>`` for major N."""
    return queue_name(summary["name"], api_version_of(summary)[0])


class VersionNotServed(LookupError):
    """A ``/v<N>/graphql`` that serves nothing: never served (404), or its last replica stopped announcing (410)."""

    def __init__(self, major, served, retired=()):
        self.major, self.served, self.retired = major, served, tuple(retired)
        listing = "; ".join(f"{name} {', '.join(versions)}" for name, versions in sorted(served.items())) or "none"
        paths = ", ".join(["/graphql", *(f"/v{m}/graphql" for m in self.majors)])
        if self.retired:
            what = (f"API version {major} is no longer served: the last replica of "
                    f"{', '.join(f'{name} {major}.x' for name in self.retired)} stopped announcing itself.")
        else:
            what = f"API version {major} is not served: no service announces a major {major}."
        super().__init__(f"{what} Versions served: {listing} (at {paths}).")

    @property
    def majors(self):
        return sorted({int(version.split(".")[0]) for versions in self.served.values() for version in versions})

    @property
    def status(self):
        return 410 if self.retired else 404

    def error(self):
        """The GraphQL error of this path's answer."""
        return {"message": str(self), "extensions": {
            "code": "version_retired" if self.retired else "version_not_served",
            "served": self.served, "paths": ["/graphql", *(f"/v{m}/graphql" for m in self.majors)]}}


@dataclass(frozen=True)
class Entry:
    summary: dict
    announced_at: object
    live: bool  # False once it departed (silent for DEPARTED_AFTER)

    @property
    def major(self):
        return api_version_of(self.summary)[0]


@dataclass(frozen=True)
class Catalog:
    """Every recorded summary by ``(name, major)``, live or departed; ``view`` makes a path's Snapshot."""

    entries: dict = field(default_factory=dict)
    _views: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_rows(cls, rows, departed_before):
        entries = {}
        for row in rows:
            try:
                major = api_version_of(row.summary)[0]
            except ValueError:
                continue  # recorded before versions were checked: not served
            live = not (row.summary.get("heartbeat") and row.announced_at < departed_before)
            entries[(row.summary.get("name", row.name), major)] = Entry(row.summary, row.announced_at, live)
        return cls(entries)

    def live(self, name, major):
        entry = self.entries.get((name, major))
        return entry.summary if entry is not None and entry.live else None

    def served(self):
        """``{name: ["2.0", "1.1"]}``: the versions live now, newest first."""
        found = {}
        for (name, major), entry in sorted(self.entries.items(), key=lambda item: -item[0][1]):
            if entry.live:
                found.setdefault(name, []).append(entry.summary.get("api_version", "1.0"))
        return found

    def base(self, major=None):
        """Every service at its newest live major (up to ``major``), whatever is retired."""
        chosen = {}
        for (name, entry_major), entry in self.entries.items():
            if entry.live and (major is None or entry_major <= major) \
                    and (name not in chosen or chosen[name].major < entry_major):
                chosen[name] = entry
        models, connections, seen = {}, {}, {}
        for name, entry in chosen.items():
            (connections if entry.summary.get("connection") else models)[name] = entry.summary
            seen[name] = entry.announced_at
        return Snapshot(models=models, connections=connections, seen=seen)

    def view(self, major=None):
        """The snapshot a path serves; VersionNotServed for a ``/v<N>`` nobody serves (any more)."""
        if major not in self._views:
            if major is not None:
                live = {name for (name, m), entry in self.entries.items() if m == major and entry.live}
                retired = sorted({name for (name, m), entry in self.entries.items()
                                  if m == major and not entry.live and name not in live})
                if retired or not live:
                    raise VersionNotServed(major, self.served(), retired)
            self._views[major] = self.base(major)
        return self._views[major]


def schema_changes(old, new):
    """``(breaking, dangerous)`` changes from one GraphQLSchema to another, as graphql-core finds them."""
    return find_breaking_changes(old, new), find_dangerous_changes(old, new)


def admit(gateway, action):
    """Record an announcement, unless no schema can be built with it or it breaks its major's (MalformedAction)."""
    summary = action.payload
    validate_summary(summary)
    if "fields" not in summary:  # a gateway: nothing to serve
        registry.record(summary)
        return
    name, (major, minor) = summary["name"], api_version_of(summary)
    catalog = registry.catalog()
    served = catalog.live(name, major)
    if served is not None and served.get("version") == summary.get("version"):
        registry.record(summary)  # a heartbeat
        return
    if served is not None and minor < api_version_of(served)[1]:
        logger.info("%s %s announced while %s is served: a heartbeat of major %d, the schema stays", name,
                    summary.get("api_version"), served.get("api_version"), major)
        registry.touch(summary)
        return
    before = catalog.base(major)
    try:
        after = build_schema(before.with_summary(summary), gateway)
        newest = catalog.base()
        if newest.service(name) is None or major_of(newest.service(name)) <= major:
            build_schema(newest.with_summary(summary), gateway)  # /graphql serves it too
    except Exception as exc:  # graphene's own reasons: a clashing type name, a bad argument…
        raise MalformedAction(f"announcement refused: the schema cannot be built with it: {exc}",
                              action.to_dict()) from None
    if served is not None:
        _check_compatible(summary, served, build_schema(before, gateway), after, action)
    registry.record(summary)


def _check_compatible(summary, served, old, new, action):
    """Refuse a summary whose schema breaks the one served for its major; log the dangerous changes."""
    breaking, dangerous = schema_changes(old.graphql_schema, new.graphql_schema)
    name, version, was = summary["name"], summary.get("api_version", "1.0"), served.get("api_version", "1.0")
    for change in dangerous:
        logger.warning("%s %s (replacing %s): dangerous change: %s", name, version, was, change.description)
    if not breaking:
        return
    for change in breaking:
        logger.warning("%s %s refused: breaking change to %s: %s", name, version, was, change.description)
    major = api_version_of(summary)[0]
    named = " ".join(change.description for change in breaking[:NAMED_CHANGES])
    more = f" (and {len(breaking) - NAMED_CHANGES} more)" if len(breaking) > NAMED_CHANGES else ""
    raise MalformedAction(
        f"announcement refused: {name} {version} breaks the schema served for {name} {major}.x ({was}): {named}{more} "
        f"{was} stays served. Keep {major}.x compatible, or announce it as {major + 1}.0 to serve it beside "
        f"{major}.x.", action.to_dict())
