"""The embedded bus: kombu's filesystem transport, made safe for many processes at once.

kombu's ``filesystem://`` routes topic-exchange messages between processes through a shared
folder, which is what the embedded default needs, but with a whole cloud on it (ten
processes or so) three races showed up, each crashing a worker ("Unrecoverable error:
JSONDecodeError") or losing a binding:

- a message file is created, then locked and written: a reader could move and read it
  empty in between. Here it is written under a name no reader picks up, then renamed into
  place (atomic on one filesystem); a reader that still finds an empty file (a writer using
  plain kombu, e.g. a test's publisher) waits for the writer's lock and reads again.
- the exchange's binding table was created with ``open("wb")`` before its lock: two
  workers binding at once could truncate each other's binding. Here it is opened without
  truncating and rewritten under the lock.
- a table read while being created was empty: read as "no bindings yet".

Selected in ``nautilus_core.settings`` as ``CELERY_BROKER_TRANSPORT`` when no broker is set.
"""
import json
import os
import time
import uuid
from queue import Empty

from kombu.transport import filesystem
from kombu.transport.filesystem import LOCK_EX, LOCK_SH, exchange_queue_t, lock, unlock
from kombu.utils.json import dumps, loads

__all__ = ["Transport"]


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.partial"  # does not end with ".<queue>.msg": no reader takes it
        with open(partial, "wb") as f:
            f.write(dumps(payload).encode())
        os.replace(partial, final)

    def _get(self, queue):
        """The oldest message of ``queue``: renamed to a name of this reader's own, then read."""
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            taken = os.path.join(self.data_folder_in, f"{filename}.taken-{uuid.uuid4().hex}")
            try:
                os.rename(os.path.join(self.data_folder_in, filename), taken)  # atomic: one reader wins
            except OSError:
                continue  # another reader took it
            try:
                return loads(_read_locked(taken))
            finally:
                os.remove(taken)
        raise Empty()

    def get_table(self, exchange):
        try:
            with self._exchange_file(exchange).open("rb") as f:
                lock(f, LOCK_SH)
                try:
                    text = f.read()
                finally:
                    unlock(f)
        except FileNotFoundError:
            return []
        return [exchange_queue_t(*q) for q in loads(text)] if text.strip() else []

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        self.control_folder.mkdir(exist_ok=True)
        binding = exchange_queue_t(routing_key or "", pattern or "", queue or "")
        fd = os.open(self._exchange_file(exchange), os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "rb+", buffering=0) as f:
            lock(f, LOCK_EX)
            try:
                text = f.read()
                table = [exchange_queue_t(*q) for q in loads(text)] if text.strip() else []
                if binding not in table:
                    table.insert(0, binding)
                    f.seek(0)
                    f.write(dumps(table).encode())
                    f.truncate()
            finally:
                unlock(f)


def _read_locked(path, attempts=200):
    """A message file's content, once its writer (holding the exclusive lock) is done."""
    for _ in range(attempts):
        with open(path, "rb") as f:
            lock(f, LOCK_SH)
            try:
                payload = f.read()
            finally:
                unlock(f)
        try:
            json.loads(payload)
            return payload
        except ValueError:
            time.sleep(0.005)  # created but not yet written by a plain-kombu writer
    return payload


class Transport(filesystem.Transport):
    Channel = Channel
