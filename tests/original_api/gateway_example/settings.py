from gateway.settings import *  # noqa: F401,F403
from gateway.settings import database, gateway_apps

INSTALLED_APPS = gateway_apps("tests.original_api.gateway_example")
DATABASES = database("gateway_example")
NAUTILUS = {"SERVICE": "tests.original_api.gateway_example.services.MyAPIGateway"}
