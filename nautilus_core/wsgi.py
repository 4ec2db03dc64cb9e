"""WSGI entry point of a service (its settings module comes from DJANGO_SETTINGS_MODULE)."""
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
