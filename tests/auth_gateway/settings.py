from examples.recipe_book.gateway.settings import *  # noqa: F401,F403

NAUTILUS = {"SERVICE": "tests.auth_gateway.services.CriteriaAPI"}
