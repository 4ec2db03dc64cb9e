"""ASGI entry point of a service (its settings module comes from DJANGO_SETTINGS_MODULE)."""
from django.core.asgi import get_asgi_application

application = get_asgi_application()
