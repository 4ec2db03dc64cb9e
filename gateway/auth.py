"""Users at the gateway: auth criteria, session tokens and login throttling.

Passwords are hashed by Django's hashers into the gateway's own ``Credential`` table;
they never travel on the bus. Session tokens are djangorestframework-simplejwt access
tokens (short-lived) and refresh tokens (rotated on every refresh, blacklisted after use
and on logout). Every token carries a session id (``sid``): logging out revokes the
session, so its access tokens are refused before they expire.
"""
import uuid

from django.core.cache import cache
from graphql import GraphQLError

from nautilus_core.conf import nautilus_settings

__all__ = ["auth_criteria", "criteria_of", "issue_tokens", "rotate_tokens", "revoke_session", "read_session",
           "Throttle", "AuthError"]


def auth_criteria(service_name):
    """Mark a gateway method as the rule deciding which rows of ``service_name`` a user may read.

    The method is called once per row as ``method(model=row, user_id=id_or_None)``, where
    ``row`` is the row as a dict (every field of the service, plus ``pk``) and ``user_id``
    the id of the signed-in user (None without a valid token). It may be a plain method or
    ``async def``; a truthy result keeps the row::

        @nautilus.auth_criteria("recipe")
        async def owns(self, model, user_id):
            return model["owner"] == user_id
    """
    def mark(method):
        method._nautilus_auth_criteria = service_name
        return method

    return mark


def criteria_of(gateway):
    """``{service name: bound method}`` of the ``@auth_criteria`` methods of a gateway."""
    found = {}
    for klass in reversed(type(gateway).__mro__):
        for attr, value in vars(klass).items():
            if hasattr(value, "_nautilus_auth_criteria"):
                found[value._nautilus_auth_criteria] = getattr(gateway, attr)
    return found


class AuthError(GraphQLError):
    def __init__(self, message, code):
        super().__init__(message, extensions={"code": code})


# -- tokens ---------------------------------------------------------------------------------

# simplejwt is imported when a token is made or read: its models exist only in gateway projects.

def issue_tokens(credential, claims):
    """A new session for ``credential``: ``(access token, refresh token)`` carrying ``claims``."""
    from rest_framework_simplejwt.tokens import RefreshToken

    refresh = RefreshToken.for_user(credential)
    for name, value in {**claims, "sid": uuid.uuid4().hex}.items():
        refresh[name] = value
    return str(refresh.access_token), str(refresh)


def rotate_tokens(refresh_token):
    """A fresh pair for a valid refresh token; the old refresh token stops working."""
    refresh = _refresh(refresh_token)
    refresh.blacklist()
    refresh.set_jti()
    refresh.set_exp()
    refresh.set_iat()
    refresh.outstand()
    return str(refresh.access_token), str(refresh)


def revoke_session(refresh_token):
    """Log out: blacklist the refresh token and refuse the session's access tokens from now on."""
    from .models import RevokedSession

    refresh = _refresh(refresh_token)
    refresh.blacklist()
    RevokedSession.objects.get_or_create(sid=refresh.get("sid") or refresh["jti"])


def _refresh(token):
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.tokens import RefreshToken

    try:
        refresh = RefreshToken(token)
    except TokenError as exc:
        raise AuthError(f"Invalid refresh token: {exc}.", "invalid_token") from None
    _check_session(refresh)
    return refresh


def read_session(authorization):
    """The claims of the ``Authorization: Bearer <token>`` header; None without a header.

    A malformed, tampered, expired or revoked token raises AuthError (never a 500).
    """
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.tokens import AccessToken

    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("The Authorization header must be 'Bearer <sessionToken>'.", "invalid_token")
    try:
        access = AccessToken(token.strip())
    except TokenError as exc:
        raise AuthError(f"Invalid session token: {exc}. Log in or refresh the session.", "invalid_token") from None
    _check_session(access)
    return dict(access.payload)


def _check_session(token):
    from .models import RevokedSession

    if token.get("sid") and RevokedSession.objects.filter(sid=token["sid"]).exists():
        raise AuthError("This session was logged out. Log in again.", "invalid_token")


# -- login throttling ------------------------------------------------------------------------

class Throttle:
    """Failed logins per account and attempts per client address, in Django's cache.

    Limits: ``NAUTILUS["LOGIN_FAILURES_PER_ACCOUNT"]`` failures and
    ``NAUTILUS["LOGIN_ATTEMPTS_PER_ADDRESS"]`` attempts per ``LOGIN_THROTTLE_WINDOW`` seconds.
    With several gateway processes, configure a shared cache (e.g. Redis) in CACHES.
    """

    def __init__(self, account, address):
        self.keys = {"account": f"nautilus-login-account:{account.lower()}",
                     "address": f"nautilus-login-address:{address}"}

    def check(self):
        limits = {"account": nautilus_settings.LOGIN_FAILURES_PER_ACCOUNT,
                  "address": nautilus_settings.LOGIN_ATTEMPTS_PER_ADDRESS}
        for which, key in self.keys.items():
            if cache.get(key, 0) >= limits[which]:
                raise AuthError(f"Too many login attempts for this {which}; try again in "
                                f"{nautilus_settings.LOGIN_THROTTLE_WINDOW:g} seconds.", "throttled")
        self._count("address")

    def failed(self):
        self._count("account")

    def succeeded(self):
        cache.delete(self.keys["account"])

    def _count(self, which):
        key = self.keys[which]
        if cache.add(key, 1, timeout=nautilus_settings.LOGIN_THROTTLE_WINDOW):
            return
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=nautilus_settings.LOGIN_THROTTLE_WINDOW)
