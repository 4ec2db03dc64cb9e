from django.apps import AppConfig


class ModelServiceConfig(AppConfig):
    name = "model_service"
    verbose_name = "nautilus model service"
