"""The original's ``nautilus.models.fields``: Django's model fields, under the original's names too.

Every Django field is here (``fields.CharField``, ``fields.ForeignKey``…). Differences:

- ``CharField()`` (and ``FixedCharField()``) may omit ``max_length``, as the original's
  peewee field did: it defaults to ``DEFAULT_MAX_LENGTH`` (255, peewee's default), so a
  PostgreSQL ``varchar(255)``. Migrations record a plain ``django.db.models.CharField``.
- ``DecimalField()`` defaults to peewee's ``max_digits=10, decimal_places=5``.
- peewee names map to Django's: ``BlobField`` → ``BinaryField``, ``DoubleField`` →
  ``FloatField``, ``PrimaryKeyField`` → ``AutoField(primary_key=True)``,
  ``ForeignKeyField`` → ``ForeignKey``. ``BareField`` (untyped) has no equivalent.
"""
from django.db import models
from django.db.models.fields import *  # noqa: F401,F403  (Django's fields, by their own names)
from django.db.models.fields import __all__ as _django_fields
from django.db.models.fields.json import JSONField  # noqa: F401
from django.db.models.fields.related import ForeignKey, ManyToManyField, OneToOneField  # noqa: F401

from .._gone import gone

__all__ = [*_django_fields, "JSONField", "ForeignKey", "ManyToManyField", "OneToOneField", "DEFAULT_MAX_LENGTH",
           "FixedCharField", "BlobField", "DoubleField", "PrimaryKeyField", "ForeignKeyField"]

DEFAULT_MAX_LENGTH = 255


class CharField(models.CharField):
    """Django's CharField; ``max_length`` defaults to 255."""

    def __init__(self, *args, max_length=DEFAULT_MAX_LENGTH, **kwargs):
        super().__init__(*args, max_length=max_length, **kwargs)

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.CharField", args, kwargs  # migrations need no nautilus


class DecimalField(models.DecimalField):
    """Django's DecimalField; ``max_digits`` and ``decimal_places`` default to peewee's 10 and 5."""

    def __init__(self, *args, max_digits=10, decimal_places=5, **kwargs):
        super().__init__(*args, max_digits=max_digits, decimal_places=decimal_places, **kwargs)

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.DecimalField", args, kwargs


class PrimaryKeyField(models.AutoField):
    """peewee's auto-incrementing primary key: Django's ``AutoField(primary_key=True)``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("primary_key", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.AutoField", args, kwargs


FixedCharField = CharField
BlobField = models.BinaryField
DoubleField = models.FloatField
ForeignKeyField = models.ForeignKey

__getattr__ = gone(__name__, {
    "BareField": "a column needs a type in Django: use TextField, JSONField or another field of this module.",
})
