"""The Celery app that consumes a service's actions.

Run a service's worker with its settings::

    DJANGO_SETTINGS_MODULE=examples.recipe_book.recipes.settings celery -A nautilus_core worker

Configuration comes from the Django settings (``CELERY_*``, set from the environment by
``nautilus_core.settings``). The worker consumes only its service's queue, declared
from the service's handlers when the worker starts.

An action whose handler fails unexpectedly is retried with Celery's retry machinery,
``NAUTILUS["MAX_RETRIES"]`` times with an exponential backoff, sent to the service's own
queue only; then it is dead-lettered. On RabbitMQ the worker publishes with publisher
confirms: a message is acknowledged only once the broker has what replaces it (the reply,
the outbox, a retry or a dead letter).
"""

import logging

from celery import Celery, signals
from celery.utils.time import get_exponential_backoff_interval
from celery.worker.consumer import Consumer

__all__ = ["app"]

logger = logging.getLogger(__name__)

app = Celery("nautilus")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task(name="nautilus.action", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def handle_action(self, *args, **kwargs):
    """Every action reaches its service through this one task: ``nautilus.action(envelope)``."""
    from .bus import direct_queue
    from .conf import nautilus_settings
    from .service import ActionFailed, get_service

    service = get_service()
    delivery = self.request.delivery_info or {}
    routing_key = delivery.get("routing_key")
    if len(args) + len(kwargs) != 1 or (kwargs and "envelope" not in kwargs):
        # Celery would fail the call and drop the message; on the bus it is kept with the reason
        service.bus.dead_letter({"args": list(args), "kwargs": kwargs}, "nautilus.action takes one argument, the "
                                f"envelope; got {len(args)} positional and {sorted(kwargs)}", kind="call",
                                service=service.name, routing_key=routing_key, queue=service.queue().name)
        return
    envelope = args[0] if args else kwargs["envelope"]
    if delivery.get("redelivered"):  # the broker gave it again: a worker died or lost its connection
        logger.info("redelivered action %s", self.request.id)
    if delivery.get("exchange") == "" and isinstance(envelope, dict):  # a retry or a replay: keep the action's key
        routing_key = envelope.get("action_type") or routing_key
    max_retries = nautilus_settings.MAX_RETRIES
    try:
        service.receive(envelope, reply_to=self.request.reply_to, routing_key=routing_key,
                        final=self.request.retries >= max_retries, attempt=self.request.retries + 1)
    except ActionFailed as exc:
        backoff = get_exponential_backoff_interval(nautilus_settings.RETRY_BACKOFF, self.request.retries, 30)
        # to this service's queue only: the original exchange and key would broadcast it to every service again
        raise self.retry(exc=exc, countdown=backoff, max_retries=max_retries, queue=direct_queue(service.queue().name))


class ActionConsumer(Consumer):
    """Celery's consumer, except that a message it cannot run is dead-lettered, not dropped.

    Celery acknowledges undecodable messages and rejects unknown ones without a
    trace; on the nautilus bus they go to ``nautilus.dead`` with the reason.
    """

    def _dead_letter(self, message, reason):
        from .service import get_service

        service = get_service()
        service.bus.dead_letter(
            message.body, reason, service=service.name, kind="message",
            routing_key=message.delivery_info.get("routing_key"), queue=service.queue().name,
            headers=dict(message.headers or {}), content_type=message.content_type,
            content_encoding=message.content_encoding,
            reply_to=message.properties.get("reply_to"), correlation_id=message.properties.get("correlation_id"),
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
    if conf.broker_url.startswith(("amqp", "pyamqp")):
        conf.broker_transport_options = {**(conf.broker_transport_options or {}), "confirm_publish": True}


@signals.worker_ready.connect(dispatch_uid="nautilus_core.celery.announce")
def _announce(**kwargs):
    from .service import get_service

    get_service().announce()


@signals.worker_shutdown.connect(dispatch_uid="nautilus_core.celery.cleanup")
def _cleanup(**kwargs):
    from .service import get_service

    get_service().cleanup()


# runservice's /health knows the worker consumes from this step's file (nautilus_core.consuming)
app.steps["consumer"].add("nautilus_core.consuming:ConsumingFile")
