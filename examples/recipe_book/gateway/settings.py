"""The recipe book's gateway: ``python manage.py runservice 8000 --settings=examples.recipe_book.gateway.settings``."""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import MIDDLEWARE, database, service_apps

INSTALLED_APPS = service_apps("corsheaders", "gateway")
MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *MIDDLEWARE]
DATABASES = database("gateway")
NAUTILUS = {"SERVICE": "examples.recipe_book.gateway.services.RecipeBookAPI"}
CORS_ALLOW_ALL_ORIGINS = True  # a public API; browsers may send Authorization and Content-Type
