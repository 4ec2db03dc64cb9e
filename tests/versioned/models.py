"""The ``recipe`` service as it changes over a rolling deploy (tests/test_versions.py).

1.0 and 1.1 share one table: 1.1 adds ``spicy`` (with a database default, so that 1.0 replicas can
still insert rows while both run). 1.2 and 2.0 drop ``minutes``, on a table of their own.
"""
from django.db import models


class Recipe(models.Model):
    """A recipe (1.1: spicy added)."""

    name = models.CharField(max_length=200)
    servings = models.PositiveIntegerField(default=1)
    minutes = models.PositiveIntegerField(null=True, blank=True)
    spicy = models.BooleanField(default=False, db_default=False)


class RecipeV10(models.Model):
    """A recipe (1.0)."""

    name = models.CharField(max_length=200)
    servings = models.PositiveIntegerField(default=1)
    minutes = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "versioned_recipe"


class RecipeV2(models.Model):
    """A recipe (minutes dropped)."""

    name = models.CharField(max_length=200)
    servings = models.PositiveIntegerField(default=1)
    spicy = models.BooleanField(default=False)
