"""Discovery: how the gateway learns the cloud, and the schema it builds from what it learned.

Every service announces a summary of itself (``init.service.pending``); the gateway keeps each one
that the cloud's schema can be built with (``gateway.registry``) and asks every service to announce
itself when it starts (the roll call). The schema is rebuilt when a summary changes (``gateway.schema``).
"""
from nautilus_core.actions import ANNOUNCE, ROLL_CALL
from nautilus_core.service import Service, on_action

from . import versions
from .registry import registry
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
        """Keep a service's summary, unless the cloud's schema could not be built with it, or it breaks the
        schema served for its major (``gateway/versions.py``)."""
        versions.admit(self, action)

    def current_schema(self, major=None):
        """The schema of the cloud as announced (rebuilt when a summary changes), at ``/v<major>`` if given."""
        snapshot = registry.snapshot(major)
        return snapshot, cloud_schema(snapshot, self)


_schemas = {}
#: schemas kept: one per path served (``/graphql``, ``/v1/graphql``…), and the ones they replace
SCHEMAS_KEPT = 8


def cloud_schema(snapshot, gateway):
    """The schema for a snapshot, built once per distinct set of summaries (the newest few are kept)."""
    schema = _schemas.pop(snapshot.key, None)
    if schema is None:
        schema = build_schema(snapshot, gateway)
        while len(_schemas) >= SCHEMAS_KEPT:
            _schemas.pop(next(iter(_schemas)))  # the least recently used
    _schemas[snapshot.key] = schema
    return schema
