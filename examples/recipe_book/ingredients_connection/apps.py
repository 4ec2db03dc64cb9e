from django.apps import AppConfig


class IngredientsConnectionConfig(AppConfig):
    name = "examples.recipe_book.ingredients_connection"
    label = "ingredients_connection"
