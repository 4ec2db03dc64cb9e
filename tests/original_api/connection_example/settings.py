from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("connection_service", "tests.original_api.connection_example")
DATABASES = database("connection_example")
NAUTILUS = {"SERVICE": "tests.original_api.connection_example.models.MyConnection"}
