"""Several HTTP processes of one ``runservice`` (``--http-processes N``): uvicorn's supervisor, saying what it does.

The parent (``runservice``: it also supervises the worker) binds the port once and starts N children, as
``uvicorn --workers`` does: each is a fresh interpreter (multiprocessing's *spawn*), so it shares nothing
with the parent or its siblings but the listening socket, the environment and the files named there. It
imports the ASGI application, sets Django up, opens its own connections to the broker and the database and
starts its own threads (the gateway's feed of outcomes: its read cache and subscriptions). The kernel gives
each new connection to one of them; a keep-alive connection or a WebSocket stays with the one it reached.
What they share through the environment: the multiprocess metrics folder (``nautilus_core.metrics``), the
worker's consuming file (``WORKER_FILE_ENV``: each child's ``/health`` reads it) and a folder of their own
(``GROUP_DIR_ENV``: the gateway's read caches tell each other of its mutations there, ``gateway.siblings``).

Supervision: uvicorn's, which pings each child every half second; a child that died or stopped answering
(``timeout_worker_healthcheck``, 5 s) is killed and replaced at once, with a line saying so, and its live
gauges stop counting in ``/metrics``. Children that die ``GIVE_UP_AFTER`` times within ``WINDOW`` seconds,
or one that fails before it serves (its application cannot be imported), stop ``runservice`` with exit
code 1, as a worker that keeps dying does. SIGTERM or SIGINT stops them all: each finishes what it serves
within the shutdown timeout and is killed if it is still there a few seconds later. SIGHUP replaces them one
by one (uvicorn's), SIGTTIN and SIGTTOU add and remove one. A child whose ``runservice`` is gone without
stopping it (``kill -9``) stops too, within a second (``watch_parent``), rather than serve on, unsupervised.
"""
import collections
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from uvicorn.supervisors.multiprocess import SIGNALS, Multiprocess

from . import metrics

__all__ = ["GROUP_DIR_ENV", "WORKER_FILE_ENV", "PARENT_ENV", "HTTPProcesses", "serve", "listening_socket",
           "group_dir", "watch_parent"]

#: a folder of the HTTP processes of one ``runservice``, made when it starts and removed when it stops
GROUP_DIR_ENV = "NAUTILUS_HTTP_GROUP_DIR"
#: the consuming file of the worker ``runservice`` supervises (``nautilus_core.consuming``), for ``/health``
WORKER_FILE_ENV = "NAUTILUS_SUPERVISED_WORKER_FILE"
#: the pid of that ``runservice``
PARENT_ENV = "NAUTILUS_HTTP_PARENT"


class HTTPProcesses(Multiprocess):
    """uvicorn's ``Multiprocess``, which says when a child died, gives up on a crash loop and bounds the stop."""

    GIVE_UP_AFTER = 5  # deaths…
    WINDOW = 60.0  # …within this many seconds
    KILL_AFTER = 5.0  # seconds past the shutdown timeout before a child that has not stopped is killed

    def __init__(self, config, sockets, *, name, say, shutdown_timeout):
        super().__init__(config, sockets)
        self.name, self.say, self.shutdown_timeout = name, say, shutdown_timeout
        self.failed = None  # why it stopped by itself (None: a signal stopped it)
        self._deaths = collections.deque()

    @property
    def pids(self):
        return [process.pid for process in self.processes]

    def init_processes(self):
        super().init_processes()
        self.say(f"{self.name}: {len(self.processes)} HTTP processes (pids {', '.join(map(str, self.pids))})")

    def keep_subprocess_alive(self):
        stopping, before = self.should_exit.is_set(), list(self.processes)
        super().keep_subprocess_alive()
        for old, new in zip(before, self.processes):
            if new is not old:
                self._died(old, new)
        if not stopping and self.should_exit.is_set() and self.failed is None:  # uvicorn's: it failed to start
            dead = next((p for p in self.processes if p.exitcode is not None), None)
            self.failed = (f"an HTTP process (pid {dead.pid if dead else '?'}) failed before it served "
                           f"(exit code {dead.exitcode if dead else '?'})")
            self.say(f"{self.name}: {self.failed}: stopping")

    def _died(self, old, new):
        metrics.process_exited(old.pid)
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > self.WINDOW:
            self._deaths.popleft()
        if len(self._deaths) >= self.GIVE_UP_AFTER:
            self.failed = f"HTTP processes died {len(self._deaths)} times in {self.WINDOW:g}s"
            self.say(f"{self.name}: the HTTP process (pid {old.pid}) exited with code {old.exitcode}; "
                     f"{self.failed}: giving up")
            self.should_exit.set()
            return
        self.say(f"{self.name}: the HTTP process (pid {old.pid}) exited with code {old.exitcode}; "
                 f"started another (pid {new.pid})")

    def handle_hup(self):
        self._forget_gone(super().handle_hup)

    def handle_ttou(self):
        self._forget_gone(super().handle_ttou)

    def _forget_gone(self, change):
        before = list(self.processes)
        change()
        for process in before:
            if process not in self.processes:
                metrics.process_exited(process.pid)

    def join_all(self):
        deadline = time.monotonic() + self.shutdown_timeout + self.KILL_AFTER
        for process in self.processes:
            process.process.join(max(0.0, deadline - time.monotonic()))
            if process.process.exitcode is None:
                self.say(f"{self.name}: the HTTP process (pid {process.pid}) did not stop in time: killing it")
                process.kill()
                process.process.join()
            metrics.process_exited(process.pid)


def serve(config, *, name, say, shutdown_timeout):
    """Serve ``config`` (a ``uvicorn.Config`` with ``workers`` > 1) until a signal; the reason it stopped by
    itself, else None. The signal handlers of before are put back."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    sock = listening_socket(config)
    try:
        processes = HTTPProcesses(config, [sock], name=name, say=say, shutdown_timeout=shutdown_timeout)
        processes.run()
        return processes.failed
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def group_dir(service_name):
    """A new folder for the HTTP processes of this ``runservice`` (removed when it stops); the folders of this
    service's ``runservice``s that are gone without removing theirs (``kill -9``) are removed."""
    for old in Path(tempfile.gettempdir()).glob(f"nautilus-{service_name}-*-*"):
        pid = old.name[len(f"nautilus-{service_name}-"):].partition("-")[0]
        if pid.isdigit() and not metrics.alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"nautilus-{service_name}-{os.getpid()}-")


def listening_socket(config):
    """The socket the children accept on: uvicorn's, marked TCP. uvicorn leaves its ``proto`` at 0, which the
    accepted connections inherit, and asyncio sets ``TCP_NODELAY`` only on a socket whose ``proto`` says TCP:
    without it every response on a kept-alive connection waited for the client's delayed ACK (about 40 ms on
    Linux; Kludex/uvicorn#3149)."""
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock


def watch_parent(every=1.0):
    """In an HTTP process of ``runservice --http-processes``: once that ``runservice`` is gone, stop as SIGTERM
    stops it (gracefully). Elsewhere, nothing."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or int(parent) == os.getpid():
        return None

    def watch():
        while os.getppid() == int(parent):
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="nautilus-parent-watch", daemon=True)
    thread.start()
    return thread
