from django.db import models


class User(models.Model):
    """A user of the recipe book. No password here: only the gateway keeps a hash of it."""

    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)

    def __str__(self):
        return self.email
