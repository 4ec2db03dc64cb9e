from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "examples.recipe_book.users"
    label = "users"
