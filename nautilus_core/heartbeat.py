"""The worker's heartbeat: its sign of life while its consumer consumes, given two ways.

- **To its own ``runservice``:** a file it touches every second (named in
  ``NAUTILUS_WORKER_HEARTBEAT`` by ``runservice`` when it starts the worker); ``/health`` reads
  how old the file is. A live process is not enough: a worker whose consumer died
  ("Unrecoverable error") or lost the broker stays alive without consuming.
- **To the cloud:** an announcement every ``NAUTILUS["HEARTBEAT"]`` seconds
  (``Service.heartbeat``); the gateway marks a service whose announcements stop unavailable,
  then drops it from the schema (``gateway.registry``).

Both come from one step of Celery's consumer blueprint, so they start when the consumer
consumes and stop (the file is removed) when it stops or restarts; they beat from the
consumer's timer (no thread of their own), so a worker that hangs stops beating too.
"""
import logging
import os
import time
from pathlib import Path

from celery import bootsteps

from .conf import nautilus_settings

__all__ = ["HEARTBEAT_ENV", "BEAT_EVERY", "Heartbeat", "heartbeat_age"]

logger = logging.getLogger(__name__)

HEARTBEAT_ENV = "NAUTILUS_WORKER_HEARTBEAT"
BEAT_EVERY = 1.0  # seconds between touches of the file


class Heartbeat(bootsteps.StartStopStep):
    """Touches the file of ``NAUTILUS_WORKER_HEARTBEAT`` (if any) and announces the service."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.path = Path(os.environ[HEARTBEAT_ENV]) if os.environ.get(HEARTBEAT_ENV) else None
        self.timer_entries = []

    def start(self, consumer):
        if self.path is not None:
            self.touch(consumer)
            self.timer_entries.append(consumer.timer.call_repeatedly(BEAT_EVERY, self.touch, (consumer,),
                                                                     priority=10))
        if nautilus_settings.HEARTBEAT > 0:
            self.timer_entries.append(consumer.timer.call_repeatedly(nautilus_settings.HEARTBEAT, self.announce,
                                                                     priority=10))

    def touch(self, consumer):
        if consumer.task_consumer is not None and consumer.connection is not None and consumer.connection.connected:
            self.path.touch()

    @staticmethod
    def announce():
        from .service import get_service

        service = get_service()
        try:
            service.heartbeat()
        except Exception:  # a beat that fails (the bus or the database away) is tried again at the next one
            logger.warning("%s: heartbeat failed", service.name, exc_info=True)

    def stop(self, consumer):
        for entry in self.timer_entries:
            entry.cancel()
        self.timer_entries = []
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    shutdown = stop


def heartbeat_age(path):
    """Seconds since the worker's last beat; None when it is not beating (no file)."""
    try:
        return max(0.0, time.time() - Path(path).stat().st_mtime)
    except OSError:
        return None
