from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("model_service", "tests.original_api.service_example")
DATABASES = database("service_example")
NAUTILUS = {"SERVICE": "tests.original_api.service_example.models.MyService"}
