"""The recipe service: ``python manage.py runservice 8001 --settings=examples.recipe_book.recipes.settings``."""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("model_service", "examples.recipe_book.recipes")
DATABASES = database("recipes")
NAUTILUS = {"SERVICE": "examples.recipe_book.recipes.services.RecipeService"}
