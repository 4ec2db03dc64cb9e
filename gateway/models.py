"""What the gateway keeps: the newest summary each service announced."""
from django.db import models


class ServiceSummary(models.Model):
    """The newest ``init.service.pending`` summary of one service (a re-announcement replaces it)."""

    name = models.CharField(max_length=200, primary_key=True)
    summary = models.JSONField()
    version = models.CharField(max_length=64, blank=True)
    announced_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "service summaries"

    def __str__(self):
        return f"{self.name} ({self.version})"
