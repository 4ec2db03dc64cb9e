"""What one HTTP process of the gateway tells the others of its ``runservice`` at once: its mutations.

Each HTTP process (``runservice --http-processes``: ``nautilus_core.http_processes``) has its own read
cache (``gateway.cache``), emptied per service by the outcomes its own feed receives, and at once by the
mutations it made itself. A mutation made through a sibling would reach it only with the outcome, which the
service publishes just *after* it answered the asker: a client whose next read goes to another process
could be answered the row of before. So a process that made a mutation also raises that service's
generation here, in a file of the processes of one ``runservice`` (its folder is ``GROUP_DIR_ENV``), mapped
in memory: ``SLOTS`` counters of 8 bytes, a service's by the CRC-32 of its name (services sharing a slot
only drop each other's answers more often). Every look-up and every answer about to be kept compares the
service's counter with the one it saw last (``ReadCache.sync``), so a read that starts after a mutation
through any process of this ``runservice`` has returned is asked again. Other replicas (other
``runservice``s) are not told: they learn from the outcome (see the README, "Scaling the gateway").
"""
import fcntl
import os
import struct
import threading
import zlib
from mmap import mmap

from nautilus_core.http_processes import GROUP_DIR_ENV

__all__ = ["SharedGenerations", "shared_generations"]

SLOTS = 1024
_COUNTER = struct.Struct("=Q")


class SharedGenerations:
    """Counters by service name, in a file the processes of one ``runservice`` map."""

    def __init__(self, path):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # the first process sizes it; the others wait for that
        try:
            if os.fstat(self._fd).st_size < SLOTS * _COUNTER.size:
                os.ftruncate(self._fd, SLOTS * _COUNTER.size)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap(self._fd, SLOTS * _COUNTER.size)
        self._lock = threading.Lock()  # flock does not exclude the threads of one process

    @staticmethod
    def _offset(service):
        return zlib.crc32(service.encode()) % SLOTS * _COUNTER.size

    def value(self, service):
        return _COUNTER.unpack_from(self._map, self._offset(service))[0]

    def raise_(self, service):
        """One more change of ``service``, for every process of this ``runservice``."""
        offset = self._offset(service)
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                _COUNTER.pack_into(self._map, offset, _COUNTER.unpack_from(self._map, offset)[0] + 1)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


def shared_generations():
    """The counters of this process's ``runservice``, or None when it serves HTTP in one process."""
    folder = os.environ.get(GROUP_DIR_ENV)
    return SharedGenerations(os.path.join(folder, "cache-generations")) if folder else None
