"""APIGateway: one GraphQL endpoint for a whole cloud.

It has no domain data. It learns the cloud from ``init.service.pending`` announcements
(and a ``roll_call`` when it starts), builds a schema from them, resolves queries by
asking services over the bus, forwards mutations as actions, and handles users::

    class RecipeBookAPI(nautilus.APIGateway):
        public_mutations = {"createIngredient"}      # every other mutation needs a session token
        owners = {"recipe": "owner"}                 # set by the gateway; a recipe is changed only by its owner
        read_rules = {"user": {"pk": {"_eq": "$user_id"}}}  # users read their own row only

The gateway is put together from one part per job, each a module of its own: ``gateway.discovery``
(announcements, the roll call, the cloud's schema), ``gateway.resolvers`` (executing requests, asking
the cloud), ``gateway.accounts`` (users, logins, sessions) and the HTTP routes below (``gateway.views``,
``gateway.index``). Who may read and write what is ``gateway.authorization``.
"""
from django.core import checks

from nautilus_core.conf import nautilus_settings
from nautilus_core.rules import RuleError, validate_rule
from nautilus_core.service import Service, ServiceMisconfigured

from .accounts import Accounts
from .auth import criteria_of
from .discovery import Discovery
from .index import index
from .resolvers import Resolvers
from .views import graphql

__all__ = ["APIGateway"]


class APIGateway(Discovery, Resolvers, Accounts, Service):
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
    #: services whose reads are never kept in the gateway's read cache (``gateway.cache``): those changed
    #: by writes that publish no outcome (``QuerySet.update()``, ``bulk_create()``, raw SQL)
    uncached = frozenset()

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


APIGateway.route("/graphql")(graphql)
APIGateway.route("/v<int:major>/graphql")(graphql)  # one major of the API (gateway/versions.py)
APIGateway.route("/")(index)  # the cloud's services, with links (gateway/index.py)
