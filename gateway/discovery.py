"""Discovery: how the gateway learns the cloud, and the schema it builds from what it learned.

Every service announces a summary of itself (``init.service.pending``); the gateway keeps each one
that the cloud's schema can be built with (``gateway.registry``) and asks every service to announce
itself when it starts (the roll call). The schema is rebuilt when a summary changes (``gateway.schema``).
"""
from nautilus_core.actions import ANNOUNCE, ROLL_CALL, MalformedAction
from nautilus_core.service import Service, on_action

from .registry import registry, validate_summary
from .schema import build_schema

__all__ = ["Discovery", "cloud_schema"]


class Discovery:
    """The gateway's discovery of the cloud (a part of ``APIGateway``)."""

    def announce(self):
        """Announce the gateway, then ask every service to announce itself (the roll call)."""
        super().announce()
        self.bus.publish(ROLL_CALL, {})

    @on_action(ROLL_CALL, record=False)
    def answer_roll_call(self, action):
        Service.announce(self)  # not self.announce(): a roll call must not start another one

    def heartbeat(self):
        """Nothing to beat for: gateways do not record each other, and a roll call per beat would make
        every service announce itself twice as often."""

    @on_action(ANNOUNCE, record=False)
    def record_announcement(self, action):
        """Keep a service's summary, unless the cloud's schema could not be built with it."""
        summary = action.payload
        validate_summary(summary)
        known = registry.snapshot()
        if "fields" in summary and summary.get("version") != (known.service(summary["name"]) or {}).get("version"):
            snapshot = known.with_summary(summary)  # a heartbeat (same version) needs no new schema
            try:
                build_schema(snapshot, self)
            except Exception as exc:  # graphene's own reasons: a clashing type name, a bad argument…
                raise MalformedAction(f"announcement refused: the schema cannot be built with it: {exc}",
                                      action.to_dict()) from None
        registry.record(summary)

    def current_schema(self):
        """The schema of the cloud as announced (rebuilt when a summary changes)."""
        snapshot = registry.snapshot()
        return snapshot, cloud_schema(snapshot, self)


_schemas = {}


def cloud_schema(snapshot, gateway):
    """The schema for a snapshot, built once per distinct set of summaries."""
    schema = _schemas.get(snapshot.key)
    if schema is None:
        _schemas.clear()  # only the newest cloud is asked for
        schema = _schemas[snapshot.key] = build_schema(snapshot, gateway)
    return schema
