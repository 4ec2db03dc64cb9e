"""The gateway's own mutations for users: registerUser, loginUser, refreshSession, logoutUser.

They exist when a ``user`` service (``APIGateway.user_service``) has announced itself;
``registerUser`` takes that service's create inputs plus a password, and replaces its
``createUser`` (which the gateway does not expose: a user needs a password).
"""
import graphene

from nautilus_core.actions import crud_action
from nautilus_core.types import object_type, wire_scalar

__all__ = ["user_mutations"]


def user_mutations(snapshot, types, gateway):
    service = gateway.user_service
    if service not in snapshot.models:
        return {}
    create = next((m for m in snapshot.mutations.values() if m["event"] == crud_action("create", service)), None)
    inputs = {i["name"]: graphene.Argument(wire_scalar(i["type"]), required=bool(i.get("required")),
                                           description=i.get("description") or f"The {i['name']}.")
              for i in (create or {}).get("inputs", []) if i["name"] != "password"}
    session_token = graphene.String(required=True, description="Send it as 'Authorization: Bearer <sessionToken>'.")
    refresh_token = graphene.String(required=True, description="Exchange it for new tokens with refreshSession.")
    session = object_type("Session", "A signed-in user and their tokens.", {
        service: graphene.Field(types[service], description=f"The signed-in {service}."),
        "sessionToken": session_token, "refreshToken": refresh_token})
    # with NAUTILUS_QUIET_REGISTRATION a registration opens no session: its tokens (and user) may be null
    registration = object_type("Registration", "The registered user and their session (none when registrations are "
                                               "quiet: then log in).", {
        service: graphene.Field(types[service], description=f"The registered {service}."),
        "sessionToken": graphene.String(description="Send it as 'Authorization: Bearer <sessionToken>'."),
        "refreshToken": graphene.String(description="Exchange it for new tokens with refreshSession.")})
    tokens = object_type("SessionTokens", "A new pair of tokens (the refresh token given stops working).", {
        "sessionToken": session_token, "refreshToken": refresh_token})
    logout = object_type("Logout", "The end of a session.", {
        "ok": graphene.Boolean(required=True, description="True: the refresh token no longer works.")})
    password = graphene.Argument(graphene.String, required=True, description="The password (kept only as a hash, "
                                                                             "at the gateway).")
    refresh = graphene.Argument(graphene.String, required=True, description="The session's refresh token.")

    def resolver(method):
        async def resolve(root, info, **args):
            return await getattr(info.context.gateway, method)(info.context, **args)

        return resolve

    return {
        f"register{service.title()}": graphene.Field(
            registration, args={**inputs, "password": password}, resolver=resolver("register_user"),
            description=f"Creates a {service} with a password and opens a session."),
        f"login{service.title()}": graphene.Field(
            session, args={gateway.login_field: graphene.Argument(
                               graphene.String, required=True, description=f"The {service}'s {gateway.login_field}."),
                           "password": password},
            resolver=resolver("login_user"), description=f"Opens a session for a {service}."),
        "refreshSession": graphene.Field(
            tokens, args={"refreshToken": refresh}, resolver=resolver("refresh_session"),
            description="New tokens for a session; the refresh token given stops working."),
        f"logout{service.title()}": graphene.Field(
            logout, args={"refreshToken": refresh}, resolver=resolver("logout_user"),
            description="Ends a session: its refresh token and session tokens stop working."),
    }
