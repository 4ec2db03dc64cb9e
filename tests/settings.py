"""Settings for the in-process tests: the recipe service plus models of every field type."""
import os

from examples.recipe_book.recipes.settings import *  # noqa: F401,F403
from examples.recipe_book.recipes.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.kitchen"]
# A test database of this run's own, so concurrent runs on one PostgreSQL do not collide.
DATABASES["default"]["TEST"] = {"NAME": f"test_nautilus_{os.getpid()}"}
SECRET_KEY = "tests-only"
