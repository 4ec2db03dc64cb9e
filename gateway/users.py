"""The gateway's own mutations for users: registerUser, loginUser, refreshSession, logoutUser.

They exist when a ``user`` service (``APIGateway.user_service``) has announced itself;
``registerUser`` takes that service's create inputs plus a password, and replaces its
``createUser`` (which the gateway does not expose: a user needs a password).
"""
import graphene

from nautilus_core.actions import crud_action
from nautilus_core.types import wire_scalar

__all__ = ["user_mutations"]


def user_mutations(snapshot, types, gateway):
    service = gateway.user_service
    if service not in snapshot.models:
        return {}
    create = next((m for m in snapshot.mutations.values() if m["event"] == crud_action("create", service)), None)
    inputs = {i["name"]: graphene.Argument(wire_scalar(i["type"]), required=bool(i.get("required")))
              for i in (create or {}).get("inputs", []) if i["name"] != "password"}
    session = type("Session", (graphene.ObjectType,), {
        service: graphene.Field(types[service]),
        "sessionToken": graphene.String(), "refreshToken": graphene.String()})
    tokens = type("SessionTokens", (graphene.ObjectType,), {
        "sessionToken": graphene.String(), "refreshToken": graphene.String()})
    logout = type("Logout", (graphene.ObjectType,), {"ok": graphene.Boolean()})

    def resolver(method):
        async def resolve(root, info, **args):
            return await getattr(info.context.gateway, method)(info.context, **args)

        return resolve

    return {
        f"register{service.title()}": graphene.Field(
            session, args={**inputs, "password": graphene.Argument(graphene.String, required=True)},
            resolver=resolver("register_user")),
        f"login{service.title()}": graphene.Field(
            session, args={gateway.login_field: graphene.Argument(graphene.String, required=True),
                           "password": graphene.Argument(graphene.String, required=True)},
            resolver=resolver("login_user")),
        "refreshSession": graphene.Field(
            tokens, args={"refreshToken": graphene.Argument(graphene.String, required=True)},
            resolver=resolver("refresh_session")),
        f"logout{service.title()}": graphene.Field(
            logout, args={"refreshToken": graphene.Argument(graphene.String, required=True)},
            resolver=resolver("logout_user")),
    }
