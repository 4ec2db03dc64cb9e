"""The recipe ↔ ingredient connection ``ingredients``::

    python manage.py runservice 8003 --settings=examples.recipe_book.ingredients_connection.settings
"""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("connection_service", "examples.recipe_book.ingredients_connection")
DATABASES = database("ingredients_connection")
NAUTILUS = {"SERVICE": "examples.recipe_book.ingredients_connection.services.Ingredients"}
