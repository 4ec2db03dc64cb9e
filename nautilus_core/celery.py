"""The Celery app that carries a service's actions: configured from Django settings, nothing else.

Run a service's worker with its settings::

    DJANGO_SETTINGS_MODULE=examples.recipe_book.recipes.settings celery -A nautilus_core worker

Configuration comes from the Django settings (``CELERY_*``, set from the environment by
``nautilus_core.settings``). What the worker does with a message (the task ``nautilus.action``,
the consumer that checks every message first, the queue it consumes) is ``nautilus_core.worker``,
which the worker imports when it starts (``include``); processes that only publish or ask
(the HTTP side, the commands) use the app without it.
"""
from celery import Celery

__all__ = ["app"]

app = Celery("nautilus", include=["nautilus_core.worker"])
app.config_from_object("django.conf:settings", namespace="CELERY")

# the service's announcements every NAUTILUS["HEARTBEAT"] seconds, for the gateway (nautilus_core.heartbeat)
app.steps["consumer"].add("nautilus_core.heartbeat:Heartbeat")
# runservice's /health knows the worker consumes from this step's file (nautilus_core.consuming)
app.steps["consumer"].add("nautilus_core.consuming:ConsumingFile")
