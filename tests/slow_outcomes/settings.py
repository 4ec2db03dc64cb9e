from examples.recipe_book.recipes.settings import *  # noqa: F401,F403

NAUTILUS = {"SERVICE": "tests.slow_outcomes.services.SlowOutcomeRecipes"}
