"""The original's ``nautilus.models``: ``BaseModel`` and ``fields``, as Django models.

::

    import nautilus.models as models           # in an app's models.py

    class Recipe(models.BaseModel):
        name = models.fields.CharField()       # max_length defaults to 255

``BaseModel`` is an abstract Django model: subclasses are ordinary Django models of the
app whose ``models.py`` defines them (migrated with ``manage.py makemigrations`` and
``migrate``, which replace the original's ``syncdb``). The database is the service's
(its settings, or ``database_url`` on its config), not a global one.
"""
from django.db import models as _models

from . import fields

__all__ = ["BaseModel", "fields"]


class BaseModel(_models.Model):
    """An abstract Django model, the base of the original's models."""

    class Meta:
        abstract = True

    @classmethod
    def fields(cls):
        """The model's concrete fields (the original's ``fields()``)."""
        return [f for f in cls._meta.get_fields() if f.concrete]

    @classmethod
    def primary_key(cls):
        """The primary key field (the original's ``primary_key()``)."""
        return cls._meta.pk

    @classmethod
    def required_fields(cls):
        """The fields a create must name (the original's ``required_fields()``, without the auto id)."""
        from model_service.fields import required_fields

        return list(required_fields(cls))

    def _json(self):
        """The record as a JSON-ready dict (what the service replies with)."""
        from model_service.fields import record_of

        return record_of(self)
