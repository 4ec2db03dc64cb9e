"""A service's database from a URL, and the original's ``config.database_url``.

``database_settings(url)`` is what ``nautilus_core.settings.database`` puts in ``DATABASES``
(with the options nautilus needs per engine). A service class may carry the original
library's configuration class::

    class ServiceConfig:
        database_url = "sqlite:////tmp/models.db"

    class RecipeService(nautilus.ModelService):
        model = Recipe
        config = ServiceConfig

Its ``database_url`` becomes the service's ``default`` database when Django starts
(``NautilusCoreConfig.ready``: after the settings module was read, before any query).
Precedence: ``DATABASE_URL`` in the environment (the operator's), then the service's
``database_url`` (the code's), then ``DATABASES`` of the settings module.
"""
import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

__all__ = ["database_settings", "config_values", "use_database_url", "apply_service_database"]

SERVER_KEEPALIVES = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


def database_settings(url):
    """``DATABASES["default"]`` for ``url``, with nautilus's options for SQLite and PostgreSQL."""
    config = dj_database_url.parse(url)
    if config["ENGINE"].endswith("sqlite3"):
        config.setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    elif config["ENGINE"].endswith("postgresql"):
        # Celery's Django fixup closes the connection around every task: with Django's psycopg
        # pool that returns it to the pool instead of opening a new one per action.
        options = config.setdefault("OPTIONS", {})
        options["pool"] = {"min_size": 1, "max_size": 4, "timeout": 10}
        # A worker cut off from the network in the middle of a transaction keeps its locks (the
        # records' unique keys) until PostgreSQL sees it gone: with keepalives a minute, not hours,
        # so another replica given the same actions is not blocked for long. Both ends probe.
        options.update(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        options["options"] = " ".join(filter(None, [options.get("options"), SERVER_KEEPALIVES]))
    return config


def config_values(*configs):
    """The public attributes of configuration classes (or dicts), the later ones winning."""
    values = {}
    for config in configs:
        if config is None:
            continue
        items = config.items() if isinstance(config, dict) else (
            (name, getattr(config, name)) for name in dir(config) if not name.startswith("_"))
        values.update(items)
    return values


def use_database_url(url):
    """Make ``url`` the ``default`` database of this process; only before it was connected to."""
    from django.conf import settings
    from django.db import connections

    if url == getattr(settings, "_nautilus_database_url", None):
        return
    opened = [alias for alias in ("default",) if getattr(connections._connections, alias, None) is not None
              and connections[alias].connection is not None]
    if opened:
        raise ImproperlyConfigured(
            "The service's database_url came after its database was opened: set `database_url` on the class's "
            "`config` (read when Django starts), or DATABASE_URL in the environment.")
    settings.DATABASES["default"] = database_settings(url)
    settings._nautilus_database_url = url
    # Django made the connection handler's settings (and a wrapper) while loading the models: redo them
    connections.__dict__.pop("settings", None)
    connections._settings = None
    if getattr(connections._connections, "default", None) is not None:
        del connections["default"]


def apply_service_database():
    """At Django start: the configured service's ``config.database_url``, unless DATABASE_URL is set."""
    from django.utils.module_loading import import_string

    from .conf import nautilus_settings

    if os.environ.get("DATABASE_URL") or not nautilus_settings.SERVICE:
        return
    try:
        cls = import_string(nautilus_settings.SERVICE)
    except (ImportError, ImproperlyConfigured, TypeError, ValueError):
        return  # `manage.py check` says why (nautilus.E002 and the like)
    url = config_values(getattr(cls, "config", None)).get("database_url")
    if url:
        use_database_url(url)
