"""The ``faulty`` service of the delivery tests: recipes, plus handlers that fail on purpose."""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("model_service", "examples.recipe_book.recipes")
DATABASES = database("faulty")
NAUTILUS = {"SERVICE": "tests.faulty.services.Faulty", "RETRY_BACKOFF": 0.1}
