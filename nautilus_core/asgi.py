"""ASGI entry point of a service (its settings module comes from DJANGO_SETTINGS_MODULE).

A service may bring its own handler (``Service.asgi_handler``), as the gateway does.
"""
import django

django.setup(set_prefix=False)

from .http_processes import watch_parent  # noqa: E402
from .observe import AccessLog  # noqa: E402
from .service import get_service  # noqa: E402  (after Django is set up)

# an access line and a count per request (nautilus_core.observe)
application = AccessLog(get_service().asgi_handler(), get_service().name)
watch_parent()  # one of several HTTP processes: it stops when its runservice is gone
