from django.apps import AppConfig


class IngredientsConfig(AppConfig):
    name = "examples.recipe_book.ingredients"
    label = "ingredients"
