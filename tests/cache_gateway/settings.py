from examples.recipe_book.gateway.settings import *  # noqa: F401,F403

NAUTILUS = {"SERVICE": "tests.cache_gateway.services.CachedCriteriaAPI"}
