"""APIGateway: one GraphQL endpoint for a whole cloud.

It has no domain data. It learns the cloud from ``init.service.pending`` announcements
(and a ``roll_call`` when it starts), builds a schema from them, resolves queries by
asking services over the bus, forwards mutations as actions, and handles users::

    class RecipeBookAPI(nautilus.APIGateway):
        public_mutations = {"createIngredient"}      # every other mutation needs a session token
        owners = {"recipe": "owner"}                 # set by the gateway; a recipe is changed only by its owner
        read_rules = {"user": {"pk": {"_eq": "$user_id"}}}  # users read their own row only

Who may read and write what is ``gateway/authorization.py``.
"""
import logging

from asgiref.sync import async_to_sync, sync_to_async
from django.core import checks
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.contrib.auth.hashers import make_password

from nautilus_core.actions import ANNOUNCE, QUERY, ROLL_CALL, SUCCESS, crud_action, name_of
from nautilus_core.conf import nautilus_settings
from nautilus_core.filters import PAGING_ARGUMENTS
from nautilus_core.graphql import execute_query_async
from nautilus_core.rules import RuleError, validate_rule
from nautilus_core.service import ActionError, Service, ServiceMisconfigured, on_action
from nautilus_core.types import json_value

from . import authorization
from .auth import (AuthError, Throttle, criteria_of, forget_user, issue_tokens, read_session, refresh_claims,
                   revoke_session, rotate_tokens)
from .execution import QueryContext, page
from . import versions
from .registry import registry
from .schema import build_schema
from .views import graphql
from .index import index

__all__ = ["APIGateway"]

logger = logging.getLogger(__name__)


class APIGateway(Service):
    name = "api"
    #: the service whose rows are the cloud's users (the original hard-coded "user")
    user_service = "user"
    #: the user field that identifies a user at login
    login_field = "email"
    #: mutations anyone may call without a session token (the user mutations always are)
    public_mutations = frozenset()
    #: ``{service: field}``: rows of that service are created for, and changed only by, the user in ``field``
    #: (the gateway sets it; clients cannot); ``"pk"`` when the row is the user itself
    owners = {}
    #: ``{service: rule}``: the rows of that service a user may read, as data the service evaluates in the
    #: query that pages (``nautilus_core.rules``: ``{"owner": {"_eq": "$user_id"}}``)
    read_rules = {}
    #: ``{connection: [column, …]}``: whose owners may link, change and unlink (default: its ``from`` column)
    connection_owners = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.schema is not None:  # the original's gateways set one; it would hide the cloud's
            raise ServiceMisconfigured(
                f"{type(self).__name__} sets `schema`: a gateway's schema is built from the services' announcements. "
                "Remove it; serve another API from a service of its own, or add HTTP routes with "
                f"@{type(self).__name__}.route(url).", check_id="nautilus.E030")

    def asgi_handler(self):
        from .asgi import GatewayASGIHandler

        return GatewayASGIHandler()

    @property
    def ask_timeout(self):
        return nautilus_settings.ASK_TIMEOUT

    @property
    def auth_criteria(self):
        """``{service name: method}`` of this gateway's ``@auth_criteria`` methods."""
        return criteria_of(self)

    # -- discovery -------------------------------------------------------------------

    def announce(self):
        """Announce the gateway, then ask every service to announce itself (the roll call)."""
        super().announce()
        self.bus.publish(ROLL_CALL, {})

    @on_action(ROLL_CALL, record=False)
    def answer_roll_call(self, action):
        Service.announce(self)  # not self.announce(): a roll call must not start another one

    def heartbeat(self):
        """Nothing to beat for: gateways do not record each other, and a roll call per beat would make
        every service announce itself twice as often."""

    def check(self):
        """``manage.py check``: every read rule has the shape of ``nautilus_core.rules`` (nautilus.E031)."""
        errors = []
        for service, rule in self.read_rules.items():
            try:
                validate_rule(rule, f"read_rules[{service!r}]")
            except RuleError as exc:
                errors.append(checks.Error(str(exc), hint="See the README, 'Users and authorization'.",
                                           obj=type(self), id="nautilus.E031"))
        return errors

    def get_handlers(self):
        handlers = super().get_handlers()
        # a user deleted in its service (through this gateway or not) has its sessions ended
        handlers[crud_action("delete", self.user_service, SUCCESS)] = self.forget_deleted_user
        return handlers

    @on_action(record=False)
    def forget_deleted_user(self, action):
        forget_user(action.payload.get("id"))

    @on_action(ANNOUNCE, record=False)
    def record_announcement(self, action):
        """Keep a service's summary, unless the cloud's schema could not be built with it, or it breaks the
        schema served for its major (``gateway/versions.py``)."""
        versions.admit(self, action)

    def current_schema(self, major=None):
        """The schema of the cloud as announced (rebuilt when a summary changes), at ``/v<major>`` if given."""
        snapshot = registry.snapshot(major)
        return snapshot, _schema(snapshot, self)

    # -- executing queries -----------------------------------------------------------

    async def execute(self, query, variables=None, operation_name=None, user=None, request=None, obey_auth=True,
                      major=None):
        """Run a GraphQL request against the cloud (``major``: at ``/v<major>``); graphql-core's ExecutionResult."""
        snapshot = registry.fresh(major) or await sync_to_async(registry.snapshot)(major)
        context = QueryContext(self, snapshot, user=user, request=request, obey_auth=obey_auth)
        return await execute_query_async(_schema(snapshot, self), query, variables, operation_name, context)

    async def session_of(self, authorization):
        """The session claims of an ``Authorization`` header (None without one); AuthError if it is bad."""
        if not authorization:
            return None  # anonymous: no database to look at, no thread hop
        return await sync_to_async(read_session)(authorization)

    @on_action(QUERY, record=False)
    def answer_query(self, action):
        """``query.api.pending`` ``{"query", "variables", "operationName"}`` → ``{"data", "errors"}``.

        The bus is the cloud's inside: these queries are not filtered by auth criteria.
        """
        query, variables = action.payload.get("query"), action.payload.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise ActionError('A query needs {"query": "<GraphQL>", "variables": {…}}.', "invalid_query")
        result = async_to_sync(self.execute)(query, variables, action.payload.get("operationName"), obey_auth=False)
        return {"data": result.data, "errors": [error.formatted for error in result.errors or ()]}

    # -- resolvers (the original's names; override to change how the cloud is asked) --

    async def object_resolver(self, context, object_name, filters):
        """The rows of ``object_name`` matching the query's filters that the user may read (one ask).

        The read rule goes with the ask, so the service pages visible rows; with a Python
        criterion the gateway reads without paging, keeps what it allows, then pages.
        """
        if not authorization.has_criteria(context, object_name):
            return await context.read(object_name, filters)
        paging = {name: filters.pop(name) for name in PAGING_ARGUMENTS if name in filters}
        return page(await self.readable(context, object_name, await context.read(object_name, filters)), **paging)

    async def connection_resolver(self, context, link, row, filters):
        """The rows a connection links to ``row``: batched per level with every other row's."""
        ids = await context.linked_ids(link).load(str(row["pk"]))
        paging = {name: filters.pop(name) for name in PAGING_ARGUMENTS if name in filters}
        rows = await context.rows(link.target, filters).load_many(ids)
        rows = await self.readable(context, link.target, [r for r in rows if r is not None])
        return page(rows, **paging)

    async def mutation_resolver(self, context, mutation, args):
        """Forward a mutation as its announced action, if the user may; return the selected outputs."""
        args = await self.authorize(context, mutation, dict(args))
        payload = {name: json_value(value) for name, value in args.items()}
        result = await context.ask(mutation["event"], payload,
                                   action_id=context.idempotent_action_id(mutation["name"], payload))
        service = name_of(mutation["event"])
        if mutation["event"] == crud_action("delete", self.user_service):
            await sync_to_async(forget_user)(result.get("id"))  # its sessions end now, not when the event arrives
        outputs = {}
        for output in mutation.get("outputs", []):
            if isinstance(output["type"], dict):
                outputs[output["name"]] = {**result, "pk": context.snapshot.pk_of(service, result)}
            else:
                outputs[output["name"]] = result.get(output["name"])
        return outputs

    # -- authorization (gateway/authorization.py) ----------------------------------------

    async def readable(self, context, service, rows):
        """The rows the request's user may read, by the service's ``@auth_criteria`` (if any)."""
        return await authorization.readable(context, service, rows)

    async def authorize(self, context, mutation, args):
        """The arguments to send for ``mutation``; refused without a session (unless public), on a row of
        someone else (``forbidden``) or on one the user may not read (``not_found``, as if it did not exist)."""
        args = await authorization.authorize(context, mutation, args)
        if name_of(mutation["event"]) == self.user_service and self.login_field in args:
            args[self.login_field] = self.normalize_login(args[self.login_field])
        return args

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


_schemas = {}
#: schemas kept: one per path served (``/graphql``, ``/v1/graphql``…), and the ones they replace
SCHEMAS_KEPT = 8


def _schema(snapshot, gateway):
    """The schema for a snapshot, built once per distinct set of summaries (the newest few are kept)."""
    schema = _schemas.pop(snapshot.key, None)
    if schema is None:
        schema = build_schema(snapshot, gateway)
        while len(_schemas) >= SCHEMAS_KEPT:
            _schemas.pop(next(iter(_schemas)))  # the least recently used
    _schemas[snapshot.key] = schema
    return schema


APIGateway.route("/graphql")(graphql)
APIGateway.route("/v<int:major>/graphql")(graphql)  # one major of the API (gateway/versions.py)
APIGateway.route("/")(index)  # the cloud's services, with links (gateway/index.py)
