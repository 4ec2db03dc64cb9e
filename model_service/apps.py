from django.apps import AppConfig


class ModelServiceConfig(AppConfig):
    name = "model_service"
    verbose_name = "nautilus model service"

    def ready(self):
        from . import signals

        signals.connect()  # ORM writes outside actions are announced (model_service/signals.py)
