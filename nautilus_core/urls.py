"""URLs of a service: ``/graphql``, ``/admin/``, ``/health`` and the service's own routes."""
from django.contrib import admin
from django.urls import path

from .service import get_service
from .views import graphql_view, health


def service_urls(service):
    urls = [path("health", health, name="health"), path("admin/", admin.site.urls)]
    if service.schema is not None:
        urls.append(path("graphql", graphql_view(service.schema), name="graphql"))
    for route, view, config in service.get_routes():
        view = view.as_view(**config) if hasattr(view, "as_view") else view
        urls.append(path(route, view))
    return urls


urlpatterns = service_urls(get_service())
