"""The Celery app that consumes a service's actions.

Run a service's worker with its settings::

    DJANGO_SETTINGS_MODULE=examples.recipe_book.recipes.settings celery -A nautilus_core worker

Configuration comes from the Django settings (``CELERY_*``, set from the environment by
``nautilus_core.settings``). The worker consumes only its service's queue, declared
from the service's handlers when the worker starts.
"""

from celery import Celery, signals
from celery.worker.consumer import Consumer

__all__ = ["app"]


app = Celery("nautilus")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task(name="nautilus.action", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def handle_action(self, envelope):
    """Every action reaches its service through this one task."""
    from .service import get_service

    get_service().receive(
        envelope,
        reply_to=self.request.reply_to,
        routing_key=(self.request.delivery_info or {}).get("routing_key"),
    )


class ActionConsumer(Consumer):
    """Celery's consumer, except that a message it cannot run is dead-lettered, not dropped.

    Celery acknowledges undecodable messages and rejects unknown ones without a
    trace; on the nautilus bus they go to ``nautilus.dead`` with the reason.
    """

    def _dead_letter(self, message, reason):
        from .service import get_service

        get_service().bus.dead_letter(
            message.body, reason, service=get_service().name,
            routing_key=message.delivery_info.get("routing_key"),
            headers={k: str(v) for k, v in (message.headers or {}).items()},
        )
        message.ack()

    def on_decode_error(self, message, exc):
        self._dead_letter(message, f"undecodable message ({message.content_type}): {exc}")

    def on_unknown_message(self, body, message):
        self._dead_letter(message, "not a nautilus action (no Celery task header)")

    def on_unknown_task(self, body, message, exc):
        self._dead_letter(message, f"unknown task {message.headers.get('task')!r}")

    def on_invalid_task(self, body, message, exc):
        self._dead_letter(message, f"invalid message: {exc}")


@signals.celeryd_init.connect(dispatch_uid="nautilus_core.celery.queues")
def _consume_the_service_queue(conf=None, **kwargs):
    """Declare the service's queue from its handlers before the worker selects queues."""
    import django

    django.setup()
    from .service import get_service

    queue = get_service().queue()
    conf.task_queues = [queue]
    conf.task_default_queue = queue.name


@signals.worker_ready.connect(dispatch_uid="nautilus_core.celery.announce")
def _announce(**kwargs):
    from .service import get_service

    get_service().announce()


@signals.worker_shutdown.connect(dispatch_uid="nautilus_core.celery.cleanup")
def _cleanup(**kwargs):
    from .service import get_service

    get_service().cleanup()
