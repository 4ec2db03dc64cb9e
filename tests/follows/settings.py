"""The ``follows`` connection service (user → user), run by the tests as a real worker."""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("connection_service", "tests.follows")
DATABASES = database("follows")
NAUTILUS = {"SERVICE": "tests.follows.services.Follows"}
