from django.apps import AppConfig


class FollowsConfig(AppConfig):
    name = "tests.follows"
    label = "follows"
