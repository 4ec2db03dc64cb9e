"""Run one service as the original ``Service.run`` did: its HTTP API and its action worker.

The worker is a child process, supervised: when it dies, it is started again after a backoff
(0.5 s, doubling up to 10 s), with one log line each time. A worker that dies ``GIVE_UP_AFTER``
times within ``WINDOW`` seconds (it cannot start: a broken setting, a lost database) stops
``runservice`` with a non-zero exit, so whatever runs it (``cloud up``, systemd, Kubernetes)
sees the failure. ``current()`` is the supervisor of this process, for ``/health``.

With ``http_processes`` > 1 (``--http-processes``, ``NAUTILUS_HTTP_PROCESSES``) HTTP is served by that many
child processes on one port, supervised as ``nautilus_core.http_processes`` says; this process then serves
no HTTP itself: it supervises them and the worker.
"""
import collections
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import uvicorn
from django.conf import settings

from . import http_processes as processes, logs, metrics
from .conf import nautilus_settings
from .consuming import CONSUMING_FILE_ENV

__all__ = ["worker_command", "run_service", "WorkerSupervisor", "current"]

logger = logging.getLogger(__name__)

_current = None
APPLICATION = "nautilus_core.asgi:application"  # imported by each HTTP process, never by a parent of several


def current():
    """The WorkerSupervisor of this process (None unless it runs ``runservice``)."""
    return _current


def worker_command(service, pool="solo", concurrency=None, loglevel="INFO", quiet=True):
    """The ``celery worker`` command line that consumes this service's actions (``quiet``: no banner)."""
    command = [sys.executable, "-m", "celery", *(["--quiet"] if quiet else []), "-A", "nautilus_core", "worker",
               f"--pool={pool}", f"--loglevel={loglevel}", f"--hostname={service.name}.{os.getpid()}@%h"]
    if concurrency:
        command.append(f"--concurrency={concurrency}")
    return command


class WorkerSupervisor(threading.Thread):
    """Starts the worker, restarts it when it dies, gives up when it keeps dying.

    ``state`` is ``running`` (the process lives), ``restarting`` (it died; a new one starts
    after the backoff), ``stopped`` (``stop`` was called) or ``gave up``.
    """

    GIVE_UP_AFTER = 5  # deaths…
    WINDOW = 60.0  # …within this many seconds
    FIRST_BACKOFF, MAX_BACKOFF = 0.5, 10.0

    def __init__(self, name, command, env, *, on_give_up, say=None):
        super().__init__(name=f"{name}-supervisor", daemon=True)
        self.service_name, self.command, self.on_give_up = name, command, on_give_up
        self.say = say or (lambda text: (sys.stdout.write(text + "\n"), sys.stdout.flush()))
        self.consuming_file = os.path.join(tempfile.gettempdir(), f"nautilus-consuming-{os.getpid()}-{id(self):x}")
        self.env = {**env, CONSUMING_FILE_ENV: self.consuming_file}
        self.process = None
        self.state = "starting"
        self.restarts = 0
        self._deaths = collections.deque()
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start_worker(self):
        with self._lock:
            if self._stopping.is_set():
                return None
            self._forget_consuming_file()  # a dead worker's last touch must not count for the new one
            self.process = subprocess.Popen(self.command, env=self.env)
            self.state = "running"
            return self.process

    def run(self):
        backoff = self.FIRST_BACKOFF
        while not self._stopping.is_set():
            process = self.process or self.start_worker()
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            metrics.process_exited(process.pid)
            if self._stopping.is_set():
                return
            self._forget_consuming_file()
            now = time.monotonic()
            if now - started > self.WINDOW:
                backoff = self.FIRST_BACKOFF  # it ran a good while: this death is not a crash loop
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > self.WINDOW:
                self._deaths.popleft()
            if len(self._deaths) >= self.GIVE_UP_AFTER:
                self.state = "gave up"
                self.say(f"{self.service_name}: the worker (pid {process.pid}) exited with code {code}; it died "
                         f"{len(self._deaths)} times in {self.WINDOW:g}s: giving up")
                self.on_give_up()
                return
            self.state = "restarting"
            self.process = None
            self.say(f"{self.service_name}: the worker (pid {process.pid}) exited with code {code}; "
                     f"restarting it in {backoff:g}s")
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.MAX_BACKOFF)
            if self.start_worker() is not None:
                self.restarts += 1
                self.say(f"{self.service_name}: worker restarted (pid {self.process.pid}, restart {self.restarts})")

    def stop(self, timeout=15):
        """Stop supervising, then the worker: SIGTERM, SIGKILL after ``timeout`` seconds."""
        with self._lock:
            self._stopping.set()
            self.state = "stopped"
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget_consuming_file()

    def _forget_consuming_file(self):
        try:
            os.unlink(self.consuming_file)
        except FileNotFoundError:
            pass


def run_service(service, host="127.0.0.1", port=8000, pool="solo", concurrency=None, stdout=sys.stdout,
                shutdown_timeout=15.0, http_processes=1):
    """Serve HTTP (uvicorn: in this process, or in ``http_processes`` children) and supervise a worker until
    SIGTERM/Ctrl-C; SystemExit(1) if the worker or the HTTP processes gave up."""
    global _current
    # one multiprocess metrics folder for the HTTP server and the worker (nautilus_core.metrics)
    metrics_dir = metrics.prepare_directory(service.name, getattr(settings, "VAR_DIR", None) or tempfile.gettempdir())
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", settings.SETTINGS_MODULE)}

    def give_up():  # from the supervisor's thread: stop serving, as SIGTERM does
        os.kill(os.getpid(), signal.SIGTERM)

    def say(text):
        stdout.write(text + "\n")
        stdout.flush()

    command = worker_command(service, pool, concurrency, quiet=not logs.verbose())
    supervisor = WorkerSupervisor(service.name, command, env, on_give_up=give_up, say=say)
    group_dir = None
    if http_processes > 1:  # what the children share besides the port (nautilus_core.http_processes)
        group_dir = processes.group_dir(service.name)
        os.environ.update({processes.GROUP_DIR_ENV: group_dir, processes.WORKER_FILE_ENV: supervisor.consuming_file,
                           processes.PARENT_ENV: str(os.getpid())})
        _say_if_cache_is_per_process(say, service.name)
    supervisor.start_worker()
    supervisor.start()
    _current = supervisor

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # ASGI, so that the asks of one gateway request wait together; uvicorn's lines in this process's log
    # format (the access lines are nautilus_core.observe's); a WebSocket message may be as big as a /graphql body
    options = dict(host=host, port=int(port), log_level="warning", log_config=None, access_log=False, lifespan="off",
                   timeout_graceful_shutdown=shutdown_timeout, ws_max_size=nautilus_settings.MAX_REQUEST_SIZE)
    # one process: uvicorn shuts down on SIGTERM, then re-raises it to this handler, so the worker is stopped
    # below; several: their supervisor stops them on SIGTERM and returns
    previous = signal.signal(signal.SIGTERM, interrupt)
    failed = None
    try:
        say(f"{service.name}: http://{host}:{port}/graphql (worker pid {supervisor.pid})")
        if http_processes > 1:
            config = uvicorn.Config(APPLICATION, workers=http_processes, **options)
            failed = processes.serve(config, name=service.name, say=say, shutdown_timeout=shutdown_timeout)
        else:
            uvicorn.run(APPLICATION, **options)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        gave_up = supervisor.state == "gave up"
        supervisor.stop(shutdown_timeout)
        _current = None
        service.cleanup()
        metrics.remove_directory(metrics_dir)
        if group_dir is not None:
            shutil.rmtree(group_dir, ignore_errors=True)
            for name in (processes.GROUP_DIR_ENV, processes.WORKER_FILE_ENV, processes.PARENT_ENV):
                os.environ.pop(name, None)
    if gave_up or failed:
        raise SystemExit(1)


def _say_if_cache_is_per_process(say, name):
    """The gateway counts logins in Django's cache (gateway.accounts): the default one lives in each process."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if "gateway" in settings.INSTALLED_APPS and backend.endswith("LocMemCache"):
        say(f"{name}: Django's cache (CACHES) is LocMemCache, one per HTTP process, so login throttling counts "
            "per process; configure a shared cache (Redis, the database) to count across them")
