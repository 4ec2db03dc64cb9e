"""The recipe book's gateway: ``python manage.py runservice 8000 --settings=examples.recipe_book.gateway.settings``."""
from gateway.settings import *  # noqa: F401,F403
from gateway.settings import database, gateway_apps

INSTALLED_APPS = gateway_apps()
DATABASES = database("gateway")
NAUTILUS = {"SERVICE": "examples.recipe_book.gateway.services.RecipeBookAPI"}
