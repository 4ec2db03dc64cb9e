from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("model_service", "tests.original_api.model_example")
DATABASES = database("model_example")
NAUTILUS = {"SERVICE": "tests.original_api.model_example.models.MyModelService"}
