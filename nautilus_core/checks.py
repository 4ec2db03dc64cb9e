"""System checks: a misconfigured service fails at ``manage.py check``, not at its first message."""
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .conf import nautilus_settings
from .exceptions import ServiceMisconfigured
from .registry import get_service


@checks.register("nautilus")
def check_service(app_configs=None, **kwargs):
    if not nautilus_settings.SERVICE:
        return [checks.Error(
            'NAUTILUS["SERVICE"] is not set.',
            hint="Name the dotted path of this process's Service class in the settings.",
            id="nautilus.E001",
        )]
    try:
        service = get_service()
    except ServiceMisconfigured as exc:
        return [checks.Error(str(exc), id=exc.check_id)]
    except (ImportError, ImproperlyConfigured, TypeError, ValueError) as exc:
        return [checks.Error(
            f"The service {nautilus_settings.SERVICE!r} cannot be loaded: {exc}",
            id="nautilus.E002",
        )]
    return list(getattr(service, "check", lambda: [])())


@checks.register("nautilus")
def check_queues(app_configs=None, **kwargs):
    from .bus import QUEUE_TYPES

    if nautilus_settings.QUEUE_TYPE not in QUEUE_TYPES:
        return [checks.Error(
            f"NAUTILUS_QUEUE_TYPE is {nautilus_settings.QUEUE_TYPE!r}.",
            hint=f"Use one of {', '.join(QUEUE_TYPES)}.",
            id="nautilus.E004",
        )]
    return []


@checks.register("nautilus")
def check_versions(app_configs=None, **kwargs):
    """The service's ``api_version`` and ``deprecations`` (``nautilus_core.versions``)."""
    from .service import get_service
    from .versions import check_service

    try:
        service = get_service()
    except Exception:  # noqa: BLE001  (check_service above reports why it cannot be loaded)
        return []
    return check_service(service)
