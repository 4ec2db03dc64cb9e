"""Base settings of a gateway service: nautilus_core's, plus users, tokens and CORS.

A gateway's settings module starts from these::

    from gateway.settings import *  # noqa: F401,F403
    from gateway.settings import database, gateway_apps

    INSTALLED_APPS = gateway_apps("myproject.api")
    DATABASES = database("gateway")
    NAUTILUS = {"SERVICE": "myproject.api.services.MyAPI"}

Environment: ``NAUTILUS_ACCESS_TOKEN_LIFETIME`` and ``NAUTILUS_REFRESH_TOKEN_LIFETIME``
(seconds; 300 and 7 days by default), ``NAUTILUS_CORS_ORIGINS`` (comma-separated; default: any).
"""
import os
from datetime import timedelta

from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import MIDDLEWARE, SECRET_KEY, database, service_apps  # noqa: F401

AUTH_USER_MODEL = "gateway.Credential"  # the gateway's record of a user: an id and a password hash
MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *MIDDLEWARE]

_origins = [o for o in os.environ.get("NAUTILUS_CORS_ORIGINS", "").split(",") if o]
CORS_ALLOW_ALL_ORIGINS = not _origins  # a public API by default; corsheaders allows Authorization
CORS_ALLOWED_ORIGINS = _origins

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=int(os.environ.get("NAUTILUS_ACCESS_TOKEN_LIFETIME", 300))),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=int(os.environ.get("NAUTILUS_REFRESH_TOKEN_LIFETIME", 7 * 86400))),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "SIGNING_KEY": SECRET_KEY,
    "USER_ID_FIELD": "user_id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]


def gateway_apps(*apps):
    """``INSTALLED_APPS`` of a gateway: the base apps, CORS, token blacklist, the gateway, then yours."""
    return service_apps("corsheaders", "rest_framework_simplejwt.token_blacklist", "gateway", *apps)
