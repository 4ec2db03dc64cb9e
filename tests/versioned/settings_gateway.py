"""A gateway whose recipe mutations need no session (tests/test_versions.py)."""
from gateway.settings import *  # noqa: F401,F403
from gateway.settings import database, gateway_apps

INSTALLED_APPS = gateway_apps()
DATABASES = database("gateway")
NAUTILUS = {"SERVICE": "tests.versioned.gateway.VersionedAPI"}
