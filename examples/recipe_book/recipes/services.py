import nautilus

from .models import Recipe


class RecipeService(nautilus.ModelService):
    model = Recipe
