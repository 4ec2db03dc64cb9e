"""Base Django settings for a nautilus service, read from the environment.

A service's settings module starts from these and names its service::

    from nautilus_core.settings import *  # noqa: F401,F403
    from nautilus_core.settings import database, service_apps

    INSTALLED_APPS = service_apps("model_service", "examples.recipe_book.recipes")
    DATABASES = database("recipes")
    NAUTILUS = {"SERVICE": "examples.recipe_book.recipes.services.RecipeService"}
    ROOT_URLCONF = "nautilus_core.urls"

Environment: ``NAUTILUS_BROKER_URL`` (default: an embedded file-backed bus under
``var/bus``), ``DATABASE_URL`` (default: one SQLite file per service under ``var/``;
``{service}`` in the URL is replaced by the service's database name),
``NAUTILUS_SECRET_KEY`` (required unless ``NAUTILUS_DEMO=1``), ``NAUTILUS_ASK_TIMEOUT``,
``NAUTILUS_DEBUG``; on Redis ``NAUTILUS_REDIS_VISIBILITY_TIMEOUT`` and ``NAUTILUS_REDIS_KEY_PREFIX``.
"""
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .brokers import embedded_transport_options  # noqa: F401 (importable from here, as before)
from .brokers import connection_options as broker_connection_options


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("NAUTILUS_VAR_DIR", BASE_DIR / "var"))

DEBUG = os.environ.get("NAUTILUS_DEBUG", "") == "1"
# The demo (the example cloud on a laptop) may run without a secret; nothing else may.
NAUTILUS_DEMO = os.environ.get("NAUTILUS_DEMO", "") == "1"
SECRET_KEY = os.environ.get("NAUTILUS_SECRET_KEY") or (
    "insecure-nautilus-demo-key-do-not-use-in-production" if NAUTILUS_DEMO else ""
)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "NAUTILUS_SECRET_KEY is not set. Set it in the environment "
        "(or NAUTILUS_DEMO=1 to run the demo cloud with an insecure key)."
    )
ALLOWED_HOSTS = os.environ.get("NAUTILUS_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "graphene_django",
    "graphene_django_graphiql_static",
    "nautilus_core",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

ROOT_URLCONF = "nautilus_core.urls"
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# GraphiQL's and the admin's assets, without collectstatic; ServeStatic (WhiteNoise's async fork)
# keeps the middleware chain async under uvicorn, where a sync middleware costs a thread hop per request
SERVESTATIC_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"nautilus_core": {"handlers": ["console"], "level": "INFO", "propagate": False},
                "model_service": {"handlers": ["console"], "level": "INFO", "propagate": False},
                "gateway": {"handlers": ["console"], "level": "INFO", "propagate": False},
                "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False}},
}

# -- the action bus (Celery on kombu) ------------------------------------------------------

# RabbitMQ, Redis or the embedded file bus; any other scheme is refused here, in one line.
# Redis's visibility timeout and key prefix come from NAUTILUS_REDIS_VISIBILITY_TIMEOUT and
# NAUTILUS_REDIS_KEY_PREFIX (see nautilus_core/brokers.py for what they mean and their defaults).
CELERY_BROKER_URL = os.environ.get("NAUTILUS_BROKER_URL") or "filesystem://"
_broker = broker_connection_options(CELERY_BROKER_URL, VAR_DIR)
CELERY_BROKER_TRANSPORT = _broker["transport"]
CELERY_BROKER_TRANSPORT_OPTIONS = _broker["transport_options"]
CELERY_BROKER_USE_SSL = _broker["ssl"]
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]  # JSON only on the nautilus bus
CELERY_TASK_ACKS_LATE = True  # ack after the handler committed
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 16
CELERY_WORKER_CONSUMER = "nautilus_core.celery:ActionConsumer"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_CREATE_MISSING_QUEUES = False


def database(name):
    """``DATABASES`` for the service ``name``: ``DATABASE_URL``, or ``var/<name>.sqlite3``."""
    url = os.environ.get("DATABASE_URL")
    if url:
        url = url.replace("{service}", name)
    else:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / name}.sqlite3"
    config = dj_database_url.parse(url)
    if config["ENGINE"].endswith("sqlite3"):
        config.setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    elif config["ENGINE"].endswith("postgresql"):
        # Celery's Django fixup closes the connection around every task: with Django's psycopg
        # pool that returns it to the pool instead of opening a new one per action.
        config.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": 4, "timeout": 10}
    return {"default": config}


def service_apps(*apps):
    """``INSTALLED_APPS`` of a service: the base apps, then its own."""
    return [*INSTALLED_APPS, *apps]

