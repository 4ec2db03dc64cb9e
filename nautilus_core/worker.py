"""The worker's side of the bus: the task every action runs as, and the consumer that checks messages first.

The Celery app (``nautilus_core.celery``) imports this module in the worker when it starts.
The worker consumes only its service's queue, declared from the service's handlers when the
worker starts.

Every message is checked by ``nautilus_core.intake`` before Celery reads it
(``ActionConsumer``): a bad one is dead-lettered with its layer and reason and acknowledged,
and the worker goes on. The first attempt of an action is then applied by the group commit of
``nautilus_core.batch``, without Celery's task machinery; what that does not answer (a refusal,
a failure, a redelivery), and every retry, runs as the task. Celery sees only the task
``nautilus.action``, its id, and the retries and eta of the service's own retries.

An action whose handler fails unexpectedly is retried with Celery's retry machinery,
``NAUTILUS["MAX_RETRIES"]`` times with an exponential backoff, sent to the service's own
queue only and signed with the service's secret key (so an outsider cannot send "retries"
or an "eta"); then it is dead-lettered. On RabbitMQ the worker publishes with publisher
confirms: a message is acknowledged only once the broker has what replaces it (the reply,
the outbox, a retry or a dead letter).
"""

import logging

from celery import signals
from celery.utils.time import get_exponential_backoff_interval
from celery.worker.consumer import Consumer

from . import intake, logs, observe
from .actions import MalformedAction
from .batch import Batch, routing_key_of
from .bus import declare, direct_queue
from .celery import app
from .conf import nautilus_settings
from .exceptions import ActionFailed
from .registry import get_service

__all__ = ["handle_action", "ActionConsumer"]

logger = logging.getLogger(__name__)
logs.connect_celery()  # the worker logs as the service does (nautilus_core.logs)


@app.task(name="nautilus.action", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
@observe.handled_action  # one metric and log line per attempt (nautilus_core.observe)
def handle_action(self, envelope):
    """Every action reaches its service through this one task: ``nautilus.action(envelope)``."""
    service = get_service()
    delivery = self.request.delivery_info or {}
    routing_key = routing_key_of(delivery, envelope)
    max_retries = nautilus_settings.MAX_RETRIES
    retries = self.request.retries
    try:
        service.receive(envelope, reply_to=self.request.reply_to, routing_key=routing_key,
                        final=retries >= max_retries, attempt=retries + 1)
    except ActionFailed as exc:
        backoff = get_exponential_backoff_interval(nautilus_settings.RETRY_BACKOFF, retries, intake.RETRY_BACKOFF_MAX)
        # to this service's queue only: the original exchange and key would broadcast it to every service again
        raise self.retry(exc=exc, countdown=backoff, max_retries=max_retries, queue=direct_queue(service.queue().name),
                         headers=intake.retry_headers(self.request.id, retries + 1))


class ActionConsumer(Consumer):
    """Celery's consumer, with every message checked by ``nautilus_core.intake`` first.

    Celery would crash on some malformed task messages (the worker stops consuming), run
    its builtin tasks, or honour an eta, expiry, time limit or callbacks sent by anyone; here
    a message that is not a plain ``nautilus.action`` is dead-lettered with the layer at fault.
    """

    def __init__(self, *args, **kwargs):
        intake.refuse_compressed_bodies()
        super().__init__(*args, **kwargs)

    def connect(self):
        """Connect, and declare the service's queue (used as it is when RabbitMQ holds it with other arguments)."""
        connection = super().connect()
        declare(connection, self.app.amqp.queues[get_service().queue().name])
        return connection

    def create_task_handler(self, *args, **kwargs):
        on_task_received = super().create_task_handler(*args, **kwargs)
        service = get_service()

        def to_task(message):
            try:
                return on_task_received(message)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:  # Celery could not read it after all
                if message.acknowledged:
                    raise
                self._refuse(service, message, MalformedAction(f"Celery refused the message: {exc!r}",
                                                               layer="headers"))

        batch = Batch(service, self.hub, to_task) if nautilus_settings.BATCH_SIZE > 0 else None

        def on_message(message):
            try:
                message.headers, envelope, action, handler = intake.admit(message, service)
            except MalformedAction as exc:
                return self._refuse(service, message, exc)
            if message.delivery_info.get("redelivered"):  # a worker died or lost its connection: here, whichever path
                logger.info("redelivered action %s", message.headers["id"])
            if batch is None or message.headers["retries"] or message.headers["eta"] is not None:
                return to_task(message)  # a retry keeps Celery's countdown and count
            batch.take(message, envelope, action, handler)

        return on_message

    def on_decode_error(self, message, exc):
        """kombu found the message unreadable before it reached ``create_task_handler`` (a compressed body)."""
        self._refuse(get_service(), message, MalformedAction(f"unreadable message: {exc}", layer="content_type"))

    @staticmethod
    def _refuse(service, message, exc):
        intake.refuse(service, exc, message=message, routing_key=message.delivery_info.get("routing_key"))
        message.ack()


@signals.celeryd_init.connect(dispatch_uid="nautilus_core.worker.queues")
def _consume_the_service_queue(conf=None, **kwargs):
    """Declare the service's queue from its handlers before the worker selects queues."""
    import django

    django.setup()
    queue = get_service().queue()
    conf.task_queues = [queue]
    conf.task_default_queue = queue.name
    if conf.broker_url.startswith(("amqp", "pyamqp")):
        conf.broker_transport_options = {**(conf.broker_transport_options or {}), "confirm_publish": True}


@signals.worker_ready.connect(dispatch_uid="nautilus_core.worker.announce")
def _announce(**kwargs):
    get_service().announce()


@signals.worker_shutdown.connect(dispatch_uid="nautilus_core.worker.cleanup")
def _cleanup(**kwargs):
    get_service().cleanup()

