from django.apps import AppConfig


class ConnectionServiceConfig(AppConfig):
    name = "connection_service"
    verbose_name = "nautilus connection service"

    def ready(self):
        # The join model is generated, not written in a models.py: put it in the app
        # registry now, before makemigrations, migrate or the ORM look for it.
        from .service import register_join_model

        register_join_model()
