"""Users at the gateway: registration, login, sessions, and login throttling.

The gateway's own mutations for users (``gateway.users``) call these methods; passwords are hashed
into the gateway's ``Credential`` table and never travel on the bus, and sessions are tokens
(``gateway.tokens``). A user deleted in its service has its sessions ended.
"""
import logging

from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError

from nautilus_core.actions import SUCCESS, crud_action
from nautilus_core.conf import nautilus_settings
from nautilus_core.service import on_action
from nautilus_core.types import json_value

from .auth import AuthError
from .tokens import forget_user, issue_tokens, read_session, refresh_claims, revoke_session, rotate_tokens

__all__ = ["Accounts", "Throttle"]

logger = logging.getLogger(__name__)


class Accounts:
    """The gateway's users (a part of ``APIGateway``; the original's names)."""

    def get_handlers(self):
        handlers = super().get_handlers()
        # a user deleted in its service (through this gateway or not) has its sessions ended
        handlers[crud_action("delete", self.user_service, SUCCESS)] = self.forget_deleted_user
        return handlers

    @on_action(record=False)
    def forget_deleted_user(self, action):
        forget_user(action.payload.get("id"))

    async def session_of(self, authorization):
        """The session claims of an ``Authorization`` header (None without one); AuthError if it is bad."""
        if not authorization:
            return None  # anonymous: no database to look at, no thread hop
        return await sync_to_async(read_session)(authorization)

    def normalize_login(self, value):
        """The login field as kept and compared: emails are one account whatever their case."""
        return value.strip().lower() if isinstance(value, str) else value

    # -- users (the original's names) --------------------------------------------------

    def user_session(self, user):
        """What goes into a user's session token besides its id (override to add roles, …)."""
        return {"id": user["pk"]}

    async def register_user(self, context, password, **fields):
        """Create the user in the user service, keep the password's hash here, open a session.

        The password never leaves the gateway. If keeping the credential fails, the user
        just created is deleted again, so a failed registration leaves no orphan.
        """
        try:
            await sync_to_async(validate_password)(password)
        except ValidationError as exc:
            raise AuthError(" ".join(exc.messages), "invalid_password") from None
        if self.login_field in fields:
            fields[self.login_field] = self.normalize_login(fields[self.login_field])
        quiet = nautilus_settings.QUIET_REGISTRATION
        if quiet and await context.read(self.user_service, {self.login_field: fields.get(self.login_field)},
                                        as_caller=False):
            await sync_to_async(make_password)(password)  # about as slow as keeping a new credential
            return _QUIET_REGISTRATION
        user = await context.ask(crud_action("create", self.user_service),
                                 {name: json_value(value) for name, value in fields.items()})
        user["pk"] = str(context.snapshot.pk_of(self.user_service, user))
        try:
            credential = await sync_to_async(_create_credential)(user["pk"], password)
        except Exception:
            logger.exception("could not keep the credential of %s %s; deleting it again", self.user_service, user["pk"])
            await context.ask(crud_action("delete", self.user_service), {"id": user["pk"]}, undo=True)
            raise AuthError("The registration failed and nothing was kept; try again.", "registration_failed") \
                from None
        return _QUIET_REGISTRATION if quiet else await self._session(credential, user)

    async def login_user(self, context, password, **identity):
        """Open a session for the user with this login field and password.

        An unknown user and a wrong password get the same answer, in about the same time.
        """
        from .models import Credential

        (field, value), = identity.items()
        value = self.normalize_login(value) if field == self.login_field else value
        address = context.request.META.get("REMOTE_ADDR", "") if context.request else ""
        throttle = Throttle(str(value), address)
        await sync_to_async(throttle.check)()
        rows = await context.read(self.user_service, {field: value}, as_caller=False)
        credential = None
        if len(rows) == 1:
            credential = await sync_to_async(Credential.objects.filter(user_id=str(rows[0]["pk"]),
                                                                       is_active=True).first)()
        if credential is None or not await sync_to_async(credential.check_password)(password):
            if credential is None:
                await sync_to_async(make_password)(password)  # as slow as a real check
            await sync_to_async(throttle.failed)()
            raise AuthError("Invalid email or password." if field == "email" else "Invalid credentials.",
                            "invalid_credentials")
        await sync_to_async(throttle.succeeded)()
        return await self._session(credential, rows[0])

    async def refresh_session(self, context, refreshToken):  # noqa: N803  (the GraphQL argument)
        user_id = (await sync_to_async(refresh_claims)(refreshToken)).get("user_id")
        if not await context.read(self.user_service, {"pk": user_id}, as_caller=False):
            await sync_to_async(forget_user)(user_id)  # deleted without a word to the gateway (e.g. in its admin)
            raise AuthError("This account is no longer active. Log in again.", "invalid_token")
        access, refresh = await sync_to_async(rotate_tokens)(refreshToken)
        return {"sessionToken": access, "refreshToken": refresh}

    async def logout_user(self, context, refreshToken):  # noqa: N803
        await sync_to_async(revoke_session)(refreshToken)
        return {"ok": True}

    async def _session(self, credential, user):
        access, refresh = await sync_to_async(issue_tokens)(credential, self.user_session(user))
        return {self.user_service: user, "sessionToken": access, "refreshToken": refresh}


# registerUser's answer with QUIET_REGISTRATION, whether the login was free or taken: log in next
_QUIET_REGISTRATION = {"sessionToken": None, "refreshToken": None}


def _create_credential(user_id, password):
    from .models import Credential

    return Credential.objects.create_user(user_id, password)


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
