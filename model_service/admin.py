"""Register the service's models in Django admin, unless the user's app already did."""
from django.contrib import admin

from django.core.exceptions import ImproperlyConfigured

from nautilus_core.service import get_service

try:
    models = get_service().get_models()
except (ImproperlyConfigured, ImportError):
    models = []  # `manage.py check` reports the misconfiguration

for model in models:
    if not admin.site.is_registered(model):
        admin.site.register(model)
