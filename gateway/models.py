"""What the gateway keeps: the newest summary each service announced."""
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
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


class CredentialManager(BaseUserManager):
    def create_user(self, user_id, password=None, **extra):
        credential = self.model(user_id=str(user_id), **extra)
        credential.set_password(password)
        credential.save(using=self._db, force_insert=True)  # never overwrite another user's credential
        return credential

    def create_superuser(self, user_id, password=None, **extra):
        return self.create_user(user_id, password, is_staff=True, is_superuser=True, **extra)


class Credential(AbstractBaseUser, PermissionsMixin):
    """The gateway's only record of a user: its id in the ``user`` service and a password hash.

    It is the gateway's ``AUTH_USER_MODEL``, so Django's password hashers (and their upgrades),
    ``is_active`` and simplejwt's outstanding/blacklisted tokens all apply to it. A staff
    credential (``createsuperuser``) signs in to the gateway's admin.
    """

    user_id = models.CharField(max_length=255, primary_key=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)

    USERNAME_FIELD = "user_id"
    objects = CredentialManager()

    def __str__(self):
        return self.user_id


class RevokedSession(models.Model):
    """A session ended by ``logoutUser``: its access tokens are refused before they expire."""

    sid = models.CharField(max_length=64, primary_key=True)
    revoked_at = models.DateTimeField(auto_now_add=True)
