"""URLs of a service: ``/graphql`` (internal: ``nautilus_core.internal``), ``/admin/``, ``/health``
(``/health/live``), ``/metrics`` (``nautilus_core.metrics``) and the service's own routes."""
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.urls import path

from .internal import internal
from .metrics import metrics_view
from .service import get_service
from .views import graphql_view, health, live


def service_urls(service):
    urls = [path("health", health, name="health"), path("health/live", live, name="health-live"),
            path("metrics", metrics_view, name="metrics"), path("admin/", admin.site.urls)]
    if service is None:
        return urls
    if service.schema is not None:
        # the service's own API reads every row, unfiltered: internal unless opened on purpose
        urls.append(path("graphql", internal(graphql_view(service.schema)), name="graphql"))
    for route, view, config in service.get_routes():
        view = view.as_view(**config) if hasattr(view, "as_view") else view
        urls.append(path(route, view))
    return urls


def _service_or_none():
    try:
        return get_service()
    except (ImproperlyConfigured, ImportError):
        return None  # `manage.py check` reports why (nautilus.E001/E002/E010…)


urlpatterns = service_urls(_service_or_none())
