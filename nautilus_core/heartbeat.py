"""The worker's heartbeat: a file it touches every second while its consumer consumes.

``runservice`` names the file in ``NAUTILUS_WORKER_HEARTBEAT`` when it starts its worker, and
its ``/health`` reads how old the file is. A live process is not enough: a worker whose
consumer died ("Unrecoverable error") or lost the broker stays alive without consuming. The
heartbeat is a step of Celery's consumer blueprint, so it starts when the consumer consumes
and stops (the file is removed) when the consumer stops or restarts; it beats from the
worker's timer, so a worker that hangs stops beating too.
"""
import os
import time
from pathlib import Path

from celery import bootsteps

__all__ = ["HEARTBEAT_ENV", "BEAT_EVERY", "Heartbeat", "heartbeat_age"]

HEARTBEAT_ENV = "NAUTILUS_WORKER_HEARTBEAT"
BEAT_EVERY = 1.0  # seconds


class Heartbeat(bootsteps.StartStopStep):
    """Touches the file of ``NAUTILUS_WORKER_HEARTBEAT`` while the consumer runs (no file: no heartbeat)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.path = Path(os.environ[HEARTBEAT_ENV]) if os.environ.get(HEARTBEAT_ENV) else None
        self.timer_entry = None

    def start(self, consumer):
        if self.path is not None:
            self.beat(consumer)
            self.timer_entry = consumer.timer.call_repeatedly(BEAT_EVERY, self.beat, (consumer,), priority=10)

    def beat(self, consumer):
        if consumer.task_consumer is not None and consumer.connection is not None and consumer.connection.connected:
            self.path.touch()

    def stop(self, consumer):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    shutdown = stop


def heartbeat_age(path):
    """Seconds since the worker's last beat; None when it is not beating (no file)."""
    try:
        return max(0.0, time.time() - Path(path).stat().st_mtime)
    except OSError:
        return None
