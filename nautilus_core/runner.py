"""Run one service as the original ``Service.run`` did: its HTTP API and its action worker."""
import os
import signal
import subprocess
import sys

import uvicorn
from django.conf import settings


def worker_command(service, pool="solo", concurrency=None, loglevel="INFO"):
    """The ``celery worker`` command line that consumes this service's actions."""
    command = [sys.executable, "-m", "celery", "-A", "nautilus_core", "worker",
               f"--pool={pool}", f"--loglevel={loglevel}", f"--hostname={service.name}.{os.getpid()}@%h"]
    if concurrency:
        command.append(f"--concurrency={concurrency}")
    return command


def run_service(service, host="127.0.0.1", port=8000, pool="solo", concurrency=None, stdout=sys.stdout,
                shutdown_timeout=15.0):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", settings.SETTINGS_MODULE)}
    worker = subprocess.Popen(worker_command(service, pool, concurrency), env=env)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # uvicorn shuts down on SIGTERM, then re-raises it to this handler, so the worker is stopped below
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        stdout.write(f"{service.name}: http://{host}:{port}/graphql (worker pid {worker.pid})\n")
        stdout.flush()
        # ASGI, so that the asks of one gateway request wait together
        uvicorn.run("nautilus_core.asgi:application", host=host, port=int(port), log_level="warning",
                    lifespan="off", timeout_graceful_shutdown=shutdown_timeout)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        worker.terminate()
        try:
            worker.wait(shutdown_timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        service.cleanup()
