"""recipe 1.1 (tests/test_versions.py)."""
from nautilus_core.settings import *  # noqa: F401,F403
from nautilus_core.settings import database, service_apps

INSTALLED_APPS = service_apps("model_service", "tests.versioned")
DATABASES = database("versioned")
NAUTILUS = {"SERVICE": "tests.versioned.services.Recipe11"}
