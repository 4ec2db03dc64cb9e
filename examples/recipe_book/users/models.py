from django.db import models
from django.db.models.functions import Lower


class User(models.Model):
    """A user of the recipe book. No password here: only the gateway keeps a hash of it."""

    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)

    class Meta:
        # one account per address whatever its case (the gateway also lower-cases what it sends)
        constraints = [models.UniqueConstraint(Lower("email"), name="users_user_email_any_case",
                                               violation_error_message="A user with this email already exists.")]

    def __str__(self):
        return self.email
