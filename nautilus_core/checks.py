"""System checks: a misconfigured service fails at ``manage.py check``, not at its first message."""
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .conf import nautilus_settings
from .service import ServiceMisconfigured


@checks.register("nautilus")
def check_service(app_configs=None, **kwargs):
    if not nautilus_settings.SERVICE:
        return [checks.Error(
            'NAUTILUS["SERVICE"] is not set.',
            hint="Name the dotted path of this process's Service class in the settings.",
            id="nautilus.E001",
        )]
    from .service import get_service

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


@checks.register("nautilus", deploy=True)
def check_secret_key(app_configs=None, **kwargs):
    from django.conf import settings

    if not settings.SECRET_KEY:
        return [checks.Error(
            "NAUTILUS_SECRET_KEY is not set.",
            hint="Set it in the environment (or NAUTILUS_DEMO=1 for the demo cloud only).",
            id="nautilus.E003",
        )]
    return []
