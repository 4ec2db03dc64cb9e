"""Which Service this process runs: ``get_service()``, from ``NAUTILUS["SERVICE"]``, and its name.

One instance per process, built on first use and kept; forgotten when a test overrides
the ``NAUTILUS`` setting, so the next call builds the service the new settings name.
"""
import functools

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .conf import nautilus_settings

__all__ = ["get_service", "service_name", "normalize_name"]


@functools.cache
def get_service():
    """The Service this process runs, from ``NAUTILUS["SERVICE"]`` (cached; reset with settings)."""
    path = nautilus_settings.SERVICE
    if not path:
        raise ImproperlyConfigured('Set NAUTILUS["SERVICE"] to the dotted path of your Service class.')
    return import_string(path)()


def normalize_name(name):
    """``RecipeService`` → ``recipeService``: the original's default service name."""
    return name[:1].lower() + name[1:]


def service_name():
    """The name of the service of these settings, without making the service (at Django start, before
    the other apps are ready): its class's ``name``, else its model's, else its class's; ``nautilus``
    when there is none (``manage.py check`` says why)."""
    try:
        cls = import_string(nautilus_settings.SERVICE)
    except Exception:
        return "nautilus"
    model = getattr(cls, "model", None)
    if getattr(cls, "name", None):
        return cls.name
    if model is not None and getattr(cls, "from_service", None) is None:
        return normalize_name(model.__name__)
    return normalize_name(cls.__name__)


def _reset(*, setting, **kwargs):
    if setting == "NAUTILUS":
        get_service.cache_clear()


setting_changed.connect(_reset, dispatch_uid="nautilus_core.registry.reset")
