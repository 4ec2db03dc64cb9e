"""Settings for the in-process tests: the recipe service plus models of every field type."""
import os

os.environ.setdefault("NAUTILUS_SECRET_KEY", "tests-only")

from examples.recipe_book.recipes.settings import *  # noqa: E402,F401,F403
from examples.recipe_book.recipes.settings import DATABASES, INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.kitchen"]
# A test database of this run's own, so concurrent runs on one PostgreSQL do not collide.
DATABASES["default"]["TEST"] = {"NAME": f"test_nautilus_{os.getpid()}"}
