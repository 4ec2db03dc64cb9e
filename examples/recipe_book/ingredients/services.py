import nautilus

from .models import Ingredient


class IngredientService(nautilus.ModelService):
    model = Ingredient
