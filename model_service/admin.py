"""Register the service's models in Django admin, unless the user's app already did."""
from django.contrib import admin

from nautilus_core.service import get_service

for model in get_service().get_models():
    if not admin.site.is_registered(model):
        admin.site.register(model)
