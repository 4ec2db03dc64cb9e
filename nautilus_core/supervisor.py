"""Child processes of ``manage.py cloud up``: started, logged with a prefix, stopped by their own PID.

Each child runs in a session of its own, so a Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in order (SIGTERM, then SIGKILL after a grace
period). The child's process group (its id is the child's PID) also holds the Celery
worker it started, so a child that dies leaves no worker behind either.
"""
import collections
import os
import re
import signal
import subprocess
import threading
import time

__all__ = ["Child", "LogPrinter", "stop_all"]

# Celery's "celery@host ready." line: the worker consumes (an HTTP /health cannot tell).
WORKER_READY = re.compile(r"@\S+ ready\.")
COLOURS = ("36", "33", "35", "32", "34", "31")  # cyan, yellow, magenta, green, blue, red


class LogPrinter:
    """Writes lines of many children to one stream, each line whole and prefixed with its child's name."""

    def __init__(self, write, colour=False, width=12):
        self.write, self.colour, self.width = write, colour, width
        self._lock = threading.Lock()
        self._count = 0

    def prefix_for(self, name):
        with self._lock:
            code = COLOURS[self._count % len(COLOURS)]
            self._count += 1
        label = f"{name:<{self.width}} |"
        return f"\033[{code}m{label}\033[0m" if self.colour else label

    def line(self, text):
        with self._lock:
            self.write(text)


class Child:
    """One child process whose output is printed with ``prefix`` and whose last lines are kept."""

    def __init__(self, name, command, *, env, cwd, printer, keep=30):
        self.name, self.command, self.env, self.cwd = name, command, env, cwd
        self.printer = printer
        self.prefix = printer.prefix_for(name)
        self.last_lines = collections.deque(maxlen=keep)
        self.worker_ready = threading.Event()
        self.process = None
        self.reported = False
        self._reader = None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self):
        self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _pump(self):
        for raw in self.process.stdout:
            text = raw.decode(errors="replace").rstrip()
            self.last_lines.append(text)
            if WORKER_READY.search(text):
                self.worker_ready.set()
            self.printer.line(f"{self.prefix} {text}")

    def exit_code(self):
        return self.process.poll() if self.process else None

    def running(self):
        return self.process is not None and self.process.poll() is None

    def tail(self, lines=15):
        if self._reader is not None:
            self._reader.join(1)  # the last lines of a child that just died
        return list(self.last_lines)[-lines:]

    def terminate(self):
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def reap_group(self, grace=10):
        """After the child exited: stop what is left of its process group (an orphaned worker)."""
        if not self.process:
            return
        deadline = time.monotonic() + grace
        sig = signal.SIGTERM
        while True:
            try:
                os.killpg(self.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                return  # the group is empty
            if time.monotonic() > deadline:
                sig = signal.SIGKILL
            time.sleep(0.2)
            if sig == signal.SIGTERM:
                sig = 0  # only probe after the first SIGTERM, until the grace period is over


def stop_all(children, grace=20):
    """SIGTERM every running child (by PID), wait ``grace`` seconds, SIGKILL the rest; reap their groups."""
    for child in reversed(children):  # the gateway first: it started last
        child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
    for child in children:
        child.reap_group(grace=5)
