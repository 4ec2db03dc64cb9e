import nautilus

from .models import Recipe, RecipeV2, RecipeV10


class Recipe10(nautilus.ModelService):
    name = "recipe"
    model = RecipeV10


class Recipe11(nautilus.ModelService):
    name = "recipe"
    model = Recipe
    api_version = "1.1"
    deprecations = {"minutes": "Gone in 2.0: read /v1/graphql until then."}


class Recipe12(nautilus.ModelService):
    """Drops minutes within major 1: a breaking change the gateway refuses."""

    name = "recipe"
    model = RecipeV2
    api_version = "1.2"


class Recipe20(nautilus.ModelService):
    """Drops minutes as a new major, served beside 1.x."""

    name = "recipe"
    model = RecipeV2
    api_version = "2.0"
