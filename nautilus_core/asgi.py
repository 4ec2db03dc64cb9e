"""ASGI entry point of a service (its settings module comes from DJANGO_SETTINGS_MODULE).

A service may bring its own handler (``Service.asgi_handler``), as the gateway does.
"""
import django

django.setup(set_prefix=False)

from .service import get_service  # noqa: E402  (after Django is set up)

application = get_service().asgi_handler()
