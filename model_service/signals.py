"""Changes made outside any action are announced like the same change made by an action.

A save or delete of the service's model through the ORM (the Django admin, ``manage.py
shell``, a data migration) publishes ``create|update|delete.<service>.success`` with the
same payload the CRUD handlers give (a delete: the row as it was, with its ``id``), through
the outbox (``Service.announce_change``), so cascades, the gateway and every other listener
see it. Inside a handler nothing is added: the action's own outcome announces the change.

Django sends no signals for ``QuerySet.update()``, ``bulk_create()`` and ``bulk_update()``
(nor for raw SQL): those writes are not announced (the README says so).
"""
from django.core.exceptions import ImproperlyConfigured
from django.db.models.signals import post_delete, post_save

from nautilus_core.actions import SUCCESS, crud_action
from nautilus_core.service import get_service

from .fields import deleted_record, record_of

__all__ = ["connect"]


def _service_owning(model):
    """The ModelService of this process when it owns ``model``, else None."""
    from .service import ModelService

    try:
        service = get_service()
    except (ImproperlyConfigured, ImportError):
        return None  # no service here (or a misconfigured one: `manage.py check` says why)
    return service if isinstance(service, ModelService) and service.model is model else None


def announce_save(sender, instance, created, raw=False, **kwargs):
    service = _service_owning(sender)
    if service is not None and not raw:  # raw: loaddata of a fixture, not a change made by anyone
        service.announce_change(crud_action("create" if created else "update", service.name, SUCCESS),
                                record_of(instance))


def announce_delete(sender, instance, **kwargs):
    service = _service_owning(sender)
    if service is not None:
        service.announce_change(crud_action("delete", service.name, SUCCESS), deleted_record(instance))


def connect():
    post_save.connect(announce_save, dispatch_uid="model_service.announce_save")
    post_delete.connect(announce_delete, dispatch_uid="model_service.announce_delete")
