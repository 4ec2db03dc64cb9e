"""Proof that a worker consumes: a file it touches every second while its consumer runs.

``runservice`` names the file in ``NAUTILUS_CONSUMING_FILE`` when it starts its worker, and its
``/health`` reads how old the file is. A live process is not enough: a worker whose consumer
died ("Unrecoverable error") or lost the broker stays alive without consuming. ``ConsumingFile``
is a step of Celery's consumer blueprint, so it starts when the consumer consumes and stops
(the file is removed) when the consumer stops or restarts; it touches the file from the
worker's timer, so a worker that hangs stops touching it too. (Not the service's heartbeat,
which announces it to the cloud: ``nautilus_core.heartbeat``.)
"""
import os
import time
from pathlib import Path

from celery import bootsteps

__all__ = ["CONSUMING_FILE_ENV", "TOUCH_EVERY", "ConsumingFile", "consuming_file_age"]

CONSUMING_FILE_ENV = "NAUTILUS_CONSUMING_FILE"
TOUCH_EVERY = 1.0  # seconds


class ConsumingFile(bootsteps.StartStopStep):
    """Touches the file of ``NAUTILUS_CONSUMING_FILE`` while the consumer runs (unset: does nothing)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.path = Path(os.environ[CONSUMING_FILE_ENV]) if os.environ.get(CONSUMING_FILE_ENV) else None
        self.timer_entry = None

    def start(self, consumer):
        if self.path is not None:
            self.touch(consumer)
            self.timer_entry = consumer.timer.call_repeatedly(TOUCH_EVERY, self.touch, (consumer,), priority=10)

    def touch(self, consumer):
        if consumer.task_consumer is not None and consumer.connection is not None and consumer.connection.connected:
            self.path.touch()

    def stop(self, consumer):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    shutdown = stop


def consuming_file_age(path):
    """Seconds since the worker last touched its file; None when it is not consuming (no file)."""
    try:
        return max(0.0, time.time() - Path(path).stat().st_mtime)
    except OSError:
        return None
