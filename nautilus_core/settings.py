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
``NAUTILUS_SECRET_KEY`` (required; with ``NAUTILUS_DEMO=1`` and neither a broker nor a database
server, a random key kept in ``var/secret_key``), ``NAUTILUS_ASK_TIMEOUT``,
``NAUTILUS_DEBUG``; on Redis ``NAUTILUS_REDIS_VISIBILITY_TIMEOUT`` and ``NAUTILUS_REDIS_KEY_PREFIX``.
"""
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from nautilus_core.databases import database_settings
from .brokers import embedded_transport_options  # noqa: F401 (importable from here, as before)
from .brokers import broker_of
from .brokers import connection_options as broker_connection_options
from .logs import logging_config



# The embedded bus and the SQLite files: ``var/`` in the folder the command runs in (the project's),
# never inside the installed package.
VAR_DIR = Path(os.environ.get("NAUTILUS_VAR_DIR") or Path.cwd() / "var").resolve()

DEBUG = os.environ.get("NAUTILUS_DEBUG", "") == "1"
# The demo (the example cloud on a laptop) may run without a secret; nothing else may.
NAUTILUS_DEMO = os.environ.get("NAUTILUS_DEMO", "") == "1"


def _servers():
    """The servers this process would talk to (a shared broker or database): no demo key with those."""
    broker, database = os.environ.get("NAUTILUS_BROKER_URL", ""), os.environ.get("DATABASE_URL", "")
    return [url.split(":", 1)[0] for url in (broker, database)
            if url and not url.startswith(("filesystem:", "memory:", "sqlite:"))]


def demo_secret_key(var_dir):
    """The demo's key: random, made once and kept in ``<var_dir>/secret_key`` (mode 0600) for every
    process of the demo. Written to a temporary file and linked into place, so a process that loses
    the race to make it reads the winner's whole key."""
    path = Path(var_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".secret_key.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process of the demo made it first
        finally:
            draft.unlink()
    return path.read_text().strip()


# a broker nautilus cannot use is the first thing to say (UnsupportedBroker: one line from manage.py)
broker_of(os.environ.get("NAUTILUS_BROKER_URL") or "filesystem://")

SECRET_KEY = os.environ.get("NAUTILUS_SECRET_KEY", "")
if not SECRET_KEY and _servers():
    raise ImproperlyConfigured(
        f"NAUTILUS_SECRET_KEY is not set, and this service uses a server ({', '.join(_servers())}): the demo's "
        "key is for a cloud on one machine only. Set NAUTILUS_SECRET_KEY (the same long random value for every "
        "service of the cloud), e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )
if not SECRET_KEY and NAUTILUS_DEMO:
    SECRET_KEY = demo_secret_key(VAR_DIR)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "NAUTILUS_SECRET_KEY is not set. Set it in the environment "
        "(or NAUTILUS_DEMO=1 to run the demo cloud with a random key kept under NAUTILUS_VAR_DIR)."
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
    "nautilus_core.tracing.TraceMiddleware",  # each request in a trace: the client's traceparent, or a new one
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

# one line per action and per request; NAUTILUS_LOG_FORMAT=json, NAUTILUS_LOG_VERBOSE=1 (nautilus_core.logs)
LOGGING = logging_config()

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
CELERY_WORKER_CONSUMER = "nautilus_core.worker:ActionConsumer"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_CREATE_MISSING_QUEUES = False


def database(name):
    """``DATABASES`` for the service ``name``: ``DATABASE_URL``, or ``var/<name>.sqlite3``.

    A ``database_url`` on the service's ``config`` class replaces this when Django starts,
    unless ``DATABASE_URL`` is set (see ``nautilus_core.databases``).
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        url = url.replace("{service}", name)
    else:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / name}.sqlite3"
    return {"default": database_settings(url)}


def service_apps(*apps):
    """``INSTALLED_APPS`` of a service: the base apps, then its own."""
    return [*INSTALLED_APPS, *apps]

