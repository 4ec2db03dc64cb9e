"""What a service keeps about the actions it handled: redelivery has no second effect, and nothing is lost.

A ``HandledAction`` row is written in the same transaction as the handler's changes. It
holds the answer (so a redelivered action gets the same reply) and the *outbox*: every
envelope to publish on the exchange because of this action (the outcome broadcast and the
events the handler emitted). They are published after the commit, and the message is
acknowledged only then, so a worker that dies in between gets the action redelivered, which
publishes the outbox again (same envelopes, same action ids: receivers that record what they
handled ignore a copy they already applied). Nothing marks an outbox as sent: that would cost
every action a write, to spare only redeliveries a few duplicate envelopes.
"""
from django.db import models

from .actions import ACTION_ID_LENGTH, Action

__all__ = ["HandledAction", "OutboxEnvelope", "TracedAction"]


class HandledAction(models.Model):
    """One action a service applied, with its answer and its outbox (recorded in the same transaction)."""

    service = models.CharField(max_length=200)
    action_id = models.CharField(max_length=ACTION_ID_LENGTH)
    action_type = models.CharField(max_length=300)
    outcome_type = models.CharField(max_length=300, blank=True)
    outcome_payload = models.JSONField(null=True)
    # the outcome's own action id, so every re-sent reply is the same envelope
    outcome_id = models.CharField(max_length=64, blank=True)
    outbox = models.JSONField(default=list, blank=True)
    handled_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "action_id"], name="nautilus_handled_once"),
        ]

    def __str__(self):
        return f"{self.service}: {self.action_type} ({self.action_id})"

    @classmethod
    def record(cls, service, action, outcome, outbox=()):
        """Record the action, its answer and the envelopes to publish; return the row."""
        row = cls.of(service, action, outcome, outbox)
        row.save(force_insert=True)
        return row

    @classmethod
    def of(cls, service, action, outcome, outbox=()):
        """The record of an action, not saved yet (``nautilus_core.batch`` saves a batch's together)."""
        return cls(
            service=service,
            action_id=action.action_id,
            action_type=action.action_type,
            outcome_type=outcome.action_type if outcome else "",
            outcome_payload=outcome.payload if outcome else None,
            outcome_id=outcome.action_id if outcome else "",
            outbox=[envelope.to_dict() for envelope in outbox],
        )

    def outcome_for(self, action):
        """The recorded answer, addressed to this delivery of the action."""
        if not self.outcome_type:
            return None
        same_id = {"action_id": self.outcome_id} if self.outcome_id else {}  # rows recorded before the outbox
        return Action(
            action_type=self.outcome_type,
            payload=self.outcome_payload,
            correlation_id=action.correlation_id,
            sender=self.service,
            **same_id,
        )

    def outbox_actions(self):
        """The outbox as Actions, to publish again with a redelivery."""
        return [Action.from_dict(envelope) for envelope in self.outbox]


class OutboxEnvelope(models.Model):
    """An envelope committed with a change made outside any action, waiting to be published.

    A save or delete of a service's model through the ORM (the Django admin, ``manage.py
    shell``, a data migration) is announced like the same change made by an action: its
    outcome envelope is written here in the change's own transaction and published after
    the commit, then deleted. Whatever a crash leaves here is published by the service's
    worker on its next heartbeat (``Service.publish_outbox``). Unlike an action's outbox,
    these rows are marked sent (deleted), since no redelivery would ever publish them again.
    """

    service = models.CharField(max_length=200)
    envelope = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return f"{self.service}: {self.envelope.get('action_type')}"


class TracedAction(models.Model):
    """One handling of an action by a service, kept ``NAUTILUS_TRACE_RETENTION`` seconds for ``manage.py trace``.

    Written when the handling ends, whatever its end (``nautilus_core.tracing``): its ``status`` is
    ``success``, ``error``, ``expired`` (refused past its deadline), ``retried`` (this attempt failed,
    another follows) or ``dead-lettered``. ``published`` lists what the service sent because of it
    (the outcome broadcast and the events it emitted: ``{"action_id", "action_type", "sent_at"}``).
    """

    service = models.CharField(max_length=200)
    action_id = models.CharField(max_length=ACTION_ID_LENGTH, db_index=True)
    action_type = models.CharField(max_length=300)
    trace_id = models.CharField(max_length=32, db_index=True)
    caused_by = models.CharField(max_length=ACTION_ID_LENGTH, blank=True)
    correlation_id = models.CharField(max_length=255, blank=True, db_index=True)
    sender = models.CharField(max_length=255, blank=True)
    sent_at = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(db_index=True)
    duration = models.FloatField(help_text="milliseconds")
    status = models.CharField(max_length=20)
    attempt = models.PositiveIntegerField(default=1)
    outcome_id = models.CharField(max_length=64, blank=True)
    outcome_type = models.CharField(max_length=300, blank=True)
    published = models.JSONField(default=list, blank=True)

    def __str__(self):
        return f"{self.service}: {self.action_type} ({self.action_id}) {self.status}"

    def as_record(self):
        """What a trace query answers of it (JSON)."""
        return {
            "service": self.service, "action_id": self.action_id, "action_type": self.action_type,
            "trace_id": self.trace_id, "caused_by": self.caused_by or None,
            "correlation_id": self.correlation_id or None, "sender": self.sender, "sent_at": self.sent_at,
            "received_at": self.received_at.isoformat(), "duration_ms": round(self.duration, 3),
            "status": self.status, "attempt": self.attempt, "outcome_id": self.outcome_id or None,
            "outcome_type": self.outcome_type or None, "published": self.published,
        }
