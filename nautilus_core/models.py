"""What a service keeps about the actions it handled, so redelivery has no second effect."""
from django.db import models

from .actions import Action


class HandledAction(models.Model):
    """One action a service applied, with the outcome it answered (recorded in the same transaction)."""

    service = models.CharField(max_length=200)
    action_id = models.CharField(max_length=64)
    action_type = models.CharField(max_length=300)
    outcome_type = models.CharField(max_length=300, blank=True)
    outcome_payload = models.JSONField(null=True)
    handled_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "action_id"], name="nautilus_handled_once"),
        ]

    def __str__(self):
        return f"{self.service}: {self.action_type} ({self.action_id})"

    @classmethod
    def record(cls, service, action, outcome):
        cls.objects.create(
            service=service,
            action_id=action.action_id,
            action_type=action.action_type,
            outcome_type=outcome.action_type if outcome else "",
            outcome_payload=outcome.payload if outcome else None,
        )

    def outcome_for(self, action):
        """The recorded answer, addressed to this delivery of the action."""
        if not self.outcome_type:
            return None
        return Action(
            action_type=self.outcome_type,
            payload=self.outcome_payload,
            correlation_id=action.correlation_id,
            sender=self.service,
        )
