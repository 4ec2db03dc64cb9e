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

__all__ = ["HandledAction", "OutboxEnvelope"]


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
        return cls.objects.create(
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
