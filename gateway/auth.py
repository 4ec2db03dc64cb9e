"""Auth at the gateway: ``@auth_criteria`` rules in Python, and the error a client gets when refused.

Who may read and write what is ``gateway.authorization``; users, logins and sessions are
``gateway.accounts`` and ``gateway.tokens``.
"""
from graphql import GraphQLError

__all__ = ["auth_criteria", "criteria_of", "AuthError"]


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

