"""Models that exercise every field type a user would put in a ModelService."""
import uuid

from django.db import models


class Gadget(models.Model):
    name = models.CharField(max_length=50)
    notes = models.TextField(blank=True)
    email = models.EmailField(blank=True)
    count = models.IntegerField(default=0)
    big = models.BigIntegerField(null=True, blank=True)
    ratio = models.FloatField(null=True, blank=True)
    price = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    active = models.BooleanField(default=True)
    made_on = models.DateField(null=True, blank=True)
    made_at = models.DateTimeField(null=True, blank=True)
    alarm = models.TimeField(null=True, blank=True)
    warranty = models.DurationField(null=True, blank=True)
    serial = models.UUIDField(default=uuid.uuid4)
    specs = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)


class Tag(models.Model):
    """A custom primary key and a camelCase field."""
    code = models.CharField(max_length=20, primary_key=True)
    displayName = models.CharField(max_length=50)  # noqa: N815  (camelCase on purpose)
