"""The worker's heartbeat: the service announces itself every ``NAUTILUS["HEARTBEAT"]`` seconds.

The gateway marks a service whose announcements stop as unavailable, then drops it from the
schema (``gateway.registry``). The beat comes from the worker, not the HTTP process: a service
is there for the cloud when it consumes actions (``Service.heartbeat``).
"""
import logging

from celery import bootsteps

from .conf import nautilus_settings
from .registry import get_service

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)


class Heartbeat(bootsteps.StartStopStep):
    """A consumer bootstep: a repeating timer on the consumer's own timer (no thread of its own)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None

    def start(self, consumer):
        interval = nautilus_settings.HEARTBEAT
        if interval > 0:
            self.timer_ref = consumer.timer.call_repeatedly(interval, self.beat, priority=10)

    def stop(self, consumer):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    shutdown = stop

    @staticmethod
    def beat():
        service = get_service()
        try:
            service.heartbeat()
        except Exception:  # a beat that fails (the bus or the database away) is tried again at the next one
            logger.warning("%s: heartbeat failed", service.name, exc_info=True)
