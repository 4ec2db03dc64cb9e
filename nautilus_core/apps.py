from django.apps import AppConfig


class NautilusCoreConfig(AppConfig):
    name = "nautilus_core"
    verbose_name = "nautilus"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .databases import apply_service_database

        apply_service_database()  # a service's config.database_url, before any query
        from .otel import configured_by_environment

        if configured_by_environment():  # OTEL_EXPORTER_OTLP_ENDPOINT…: spans, before the middleware is built
            from .otel import configure_from_environment
            from .registry import service_name

            configure_from_environment(service_name())
