"""Session tokens at the gateway: issued at login, rotated on refresh, revoked at logout.

Session tokens are djangorestframework-simplejwt access tokens (short-lived) and refresh tokens
(rotated on every refresh, blacklisted after use and on logout). Every token carries a session id
(``sid``): logging out, or using a refresh token twice, revokes the session, so its access tokens
are refused before they expire. A session ends with its user (inactive or deleted) and after
``SESSION_MAX_LIFETIME`` at most.
"""
import functools
import time
import uuid

from django.utils.crypto import salted_hmac

from nautilus_core.conf import nautilus_settings

from .auth import AuthError

__all__ = ["issue_tokens", "rotate_tokens", "revoke_session", "refresh_claims", "read_session", "forget_user"]

# simplejwt is imported when a token is made or read: its models exist only in gateway projects.

def issue_tokens(credential, claims):
    """A new session for ``credential``: ``(access token, refresh token)`` carrying ``claims``.

    Besides ``claims`` every token carries its session (``sid``, the token family that
    rotation keeps and logout or reuse revokes), when the session began (``auth_time``,
    which bounds its whole life) and a mark of the credential (``cred``: a new credential
    for a reused id, or a changed password, ends the sessions of the old one).
    """
    from rest_framework_simplejwt.tokens import RefreshToken

    refresh = RefreshToken.for_user(credential)
    session = {"sid": uuid.uuid4().hex, "auth_time": refresh["iat"], "cred": _credential_mark(credential.password)}
    for name, value in {**claims, **session}.items():
        refresh[name] = value
    return _pair(refresh)


def rotate_tokens(refresh_token):
    """A fresh pair for a valid refresh token; the old refresh token stops working.

    Atomic: of several refreshes with one token exactly one wins (the unique row that
    blacklists it); a token used again, concurrently or later, is a stolen or replayed one,
    so the whole session is revoked. Rotation does not extend the session's life.
    """
    from django.db import IntegrityError, transaction
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    from .models import RevokedSession

    refresh = _refresh(refresh_token)
    with transaction.atomic():
        outstanding = _outstanding(refresh)
        try:
            with transaction.atomic():
                BlacklistedToken.objects.create(token=outstanding)
            reused = False
        except IntegrityError:  # blacklisted already: by a rotation, a logout or a concurrent refresh
            RevokedSession.objects.get_or_create(sid=_sid(refresh))
            reused = True
        if not reused:
            refresh.set_jti()
            refresh.set_exp()
            refresh.set_iat()
            pair = _pair(refresh)
            refresh.outstand()
    if reused:
        raise AuthError("This refresh token was used before; the session is ended for safety. Log in again.",
                        "invalid_token")
    return pair


def revoke_session(refresh_token):
    """Log out: blacklist the refresh token and refuse the session's access tokens from now on."""
    from .models import RevokedSession

    refresh = _refresh(refresh_token)
    refresh.blacklist()
    RevokedSession.objects.get_or_create(sid=_sid(refresh))


def refresh_claims(refresh_token):
    """The claims of a valid refresh token of a live session (AuthError otherwise), without using it."""
    return dict(_refresh(refresh_token).payload)


def forget_user(user_id):
    """The user is gone: its credential goes, and with it every session of the user."""
    from .models import Credential

    if user_id is not None:
        Credential.objects.filter(user_id=str(user_id)).delete()


def _pair(refresh):
    """``(access, refresh)``, neither outliving the session (``auth_time`` + ``SESSION_MAX_LIFETIME``)."""
    end = int(refresh.get("auth_time", refresh["iat"]) + nautilus_settings.SESSION_MAX_LIFETIME)
    refresh["exp"] = min(refresh["exp"], end)
    access = refresh.access_token
    access["exp"] = min(access["exp"], end)
    return str(access), str(refresh)


def _outstanding(refresh):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
    from rest_framework_simplejwt.utils import datetime_from_epoch

    from .models import Credential

    token, _ = OutstandingToken.objects.get_or_create(jti=refresh["jti"], defaults={
        "user": Credential.objects.filter(user_id=str(refresh.get("user_id"))).first(),
        "token": str(refresh), "created_at": refresh.current_time, "expires_at": datetime_from_epoch(refresh["exp"])})
    return token


def _sid(token):
    return token.get("sid") or token["jti"]


@functools.cache
def _refresh_class():
    from rest_framework_simplejwt.tokens import RefreshToken

    class Refresh(RefreshToken):
        """A refresh token whose blacklisting ``rotate_tokens`` checks itself, in its transaction: a used
        token is then a replay that ends the session, not just a refusal."""

        def check_blacklist(self):
            pass

    return Refresh


def _refresh(token):
    from rest_framework_simplejwt.exceptions import TokenError

    try:
        refresh = _refresh_class()(token)
    except TokenError as exc:
        raise AuthError(f"Invalid refresh token: {exc}.", "invalid_token") from None
    _check_session(refresh)
    return refresh


def read_session(authorization):
    """The claims of the ``Authorization: Bearer <token>`` header; None without a header.

    A malformed, tampered, expired or revoked token, or one of a user who is no longer
    active (or no longer exists), raises AuthError (never a 500).
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
    """Refuse a token whose session was revoked, whose user is inactive or gone, or that is too old.

    One query: the user's active credential, and whether the session was revoked.
    """
    from django.db.models import Exists

    from .models import Credential, RevokedSession

    started = token.get("auth_time", token.get("iat", 0))
    if time.time() - started > nautilus_settings.SESSION_MAX_LIFETIME:
        raise AuthError("This session is too old. Log in again.", "invalid_token")
    found = (Credential.objects.filter(user_id=str(token.get("user_id")), is_active=True)
             .annotate(revoked=Exists(RevokedSession.objects.filter(sid=_sid(token))))
             .values_list("password", "revoked").first())
    if found is not None and found[1]:
        raise AuthError("This session was logged out. Log in again.", "invalid_token")
    if found is None or token.get("cred") != _credential_mark(found[0]):
        raise AuthError("This account is no longer active. Log in again.", "invalid_token")


def _credential_mark(password_hash):
    """A short keyed mark of the credential's password hash: it changes with the credential."""
    return salted_hmac("nautilus.gateway.session", password_hash, algorithm="sha256").hexdigest()[:16]

