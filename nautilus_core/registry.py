"""Which Service this process runs: ``get_service()``, from ``NAUTILUS["SERVICE"]``.

One instance per process, built on first use and kept; forgotten when a test overrides
the ``NAUTILUS`` setting, so the next call builds the service the new settings name.
"""
import functools

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .conf import nautilus_settings

__all__ = ["get_service"]


@functools.cache
def get_service():
    """The Service this process runs, from ``NAUTILUS["SERVICE"]`` (cached; reset with settings)."""
    path = nautilus_settings.SERVICE
    if not path:
        raise ImproperlyConfigured('Set NAUTILUS["SERVICE"] to the dotted path of your Service class.')
    return import_string(path)()


def _reset(*, setting, **kwargs):
    if setting == "NAUTILUS":
        get_service.cache_clear()


setting_changed.connect(_reset, dispatch_uid="nautilus_core.registry.reset")
