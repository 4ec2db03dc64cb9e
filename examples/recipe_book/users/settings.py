"""The user service: ``python manage.py runservice 8004 --settings=examples.recipe_book.users.settings``."""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("model_service", "examples.recipe_book.users")
DATABASES = database("users")
NAUTILUS = {"SERVICE": "examples.recipe_book.users.services.UserService"}
