"""The ingredient service: ``python manage.py runservice 8002 --settings=examples.recipe_book.ingredients.settings``."""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("model_service", "examples.recipe_book.ingredients")
DATABASES = database("ingredients")
NAUTILUS = {"SERVICE": "examples.recipe_book.ingredients.services.IngredientService"}
