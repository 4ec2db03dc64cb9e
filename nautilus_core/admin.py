"""Django admin for every service: its models are registered, unless the user's app did it already."""
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured

from .service import get_service

try:
    _models = get_service().get_models()
except (ImproperlyConfigured, ImportError):
    _models = []  # reported by the system checks (manage.py check), with its check id

for model in _models:
    if not admin.site.is_registered(model):
        admin.site.register(model)
