from django.apps import AppConfig


class RecipesConfig(AppConfig):
    name = "examples.recipe_book.recipes"
    label = "recipes"
