"""A cloud: the services of one folder, run together (``manage.py cloud up [PATH]``).

A cloud is a folder whose sub-packages each hold a ``settings.py``: one service each
(``examples/recipe_book/recipes/settings.py`` …). The gateway is the service whose settings
install the ``gateway`` app; it gets the base port (8000) and starts last, so its roll call
finds the others up; the other services get the next ports, in the order of their names.
Settings modules are imported by their package path: the folder's packages are walked up
to the first folder without ``__init__.py``, which goes on the children's ``PYTHONPATH``.
A sub-package whose settings name no service (``NAUTILUS["SERVICE"]``), such as the
project package made by ``django-admin startproject``, is not a service and is skipped.
Children run ``python -m django`` in the current folder (see ``nautilus_core.process``).

``up`` migrates every service's database (creating the PostgreSQL databases that a
``DATABASE_URL`` with ``{service}`` names), starts ``manage.py runservice`` per service with
``NAUTILUS_PUBLIC_URL`` set (so the gateway's index links to it), waits for each one's
``/health`` and worker, starts the gateway (with ``--http-processes`` when ``gateway_processes`` is
given), and writes ``cloud.json`` in the var folder for ``cloud status``.
"""
import importlib
import json
import os
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .logs import still
from .process import django_command, python_path
from .supervisor import Child, stop_all

__all__ = ["ServiceSpec", "discover", "create_databases", "Cloud", "CloudError", "get_json", "health_of"]


NOTE_EVERY = 5.0  # seconds between two "waiting for …" lines


class CloudError(Exception):
    """The cloud cannot start (or a service died while it started); the message says which and why."""


@dataclass(eq=False)  # hashable: a spec is one service
class ServiceSpec:
    package: str            # the sub-package, e.g. "recipes": the name in logs
    settings: str           # its settings module, e.g. "examples.recipe_book.recipes.settings"
    gateway: bool
    database: dict = field(repr=False, default_factory=dict)
    port: int = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def import_root(folder):
    """The folder to put on ``sys.path`` so that ``folder``'s packages import by their full name."""
    root = Path(folder).resolve()
    while (root / "__init__.py").exists():
        root = root.parent
    return root


def discover(path, base_port=8000):
    """The services of the cloud in ``path``, gateway last; ``base_port`` 0 picks free ports."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        raise CloudError(f"{path} is not a folder")
    root = import_root(folder)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    prefix = ".".join(folder.relative_to(root).parts)
    specs = []
    for settings_file in sorted(folder.glob("*/settings.py")):
        package = settings_file.parent.name
        if not (settings_file.parent / "__init__.py").exists():
            continue
        module_name = f"{prefix}.{package}.settings" if prefix else f"{package}.settings"
        module = importlib.import_module(module_name)  # plain settings: no app is loaded
        if not getattr(module, "NAUTILUS", {}).get("SERVICE"):
            continue  # a Django project's own settings, not a service
        specs.append(ServiceSpec(package, module_name, "gateway" in getattr(module, "INSTALLED_APPS", ()),
                                 module.DATABASES["default"]))
    if not specs:
        raise CloudError(f"{path} holds no service: no sub-package with a settings.py naming a NAUTILUS service")
    specs.sort(key=lambda s: (s.gateway, s.package))
    ports = iter(range(base_port + 1, base_port + 1 + len(specs)))
    for spec in specs:
        spec.port = _free_port() if not base_port else base_port if spec.gateway else next(ports)
    return root, specs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_databases(specs, say):
    """Create the missing PostgreSQL databases a ``DATABASE_URL`` with ``{service}`` names."""
    if "{service}" not in os.environ.get("DATABASE_URL", ""):
        return
    import psycopg

    for spec in specs:
        db = spec.database
        if "postgresql" not in db["ENGINE"]:
            continue
        with psycopg.connect(dbname="postgres", user=db.get("USER") or None, password=db.get("PASSWORD") or None,
                             host=db.get("HOST") or None, port=db.get("PORT") or None, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
                say(f"created the PostgreSQL database {db['NAME']}")


def get_json(url, timeout=2.0, headers=None):
    """``GET url`` as JSON; None when it does not answer 200 in time."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json",
                                                                         **(headers or {})}),
                                    timeout=timeout) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError):
        return None


def health_of(url, timeout=2.0):
    """``(True, "")`` when the service at ``url`` is ready; else ``(False, what is down)`` from its ``/health``."""
    import urllib.error

    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url.rstrip('/')}/health",
                                                           headers={"Accept": "application/json"}),
                                    timeout=timeout) as response:
            return response.status == 200, ""
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            return False, f"HTTP {exc.code}"
        down = [f"{part} {state}" for part, state in body.items()
                if part in ("worker", "broker", "database") and state not in ("ok", "consuming")]
        return False, ", ".join(down) or f"HTTP {exc.code}"
    except OSError:
        return False, "no answer"


class Cloud:
    """Runs a cloud's services as child processes until ``stop``."""

    def __init__(self, specs, root, *, printer, say, env=None, var_dir=None, timeout=120, gateway_processes=None):
        self.specs, self.root, self.printer, self.say = specs, root, printer, say
        self.gateway_processes = gateway_processes
        self.var_dir = Path(var_dir) if var_dir else None
        self.timeout = timeout
        self.children = []
        self.base_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path(root)}
        if self.var_dir is not None:  # every child sees the same var folder, whatever its settings say
            self.base_env["NAUTILUS_VAR_DIR"] = str(self.var_dir)

    @property
    def gateway(self):
        return next((spec for spec in self.specs if spec.gateway), None)

    def _manage(self, spec, *args):
        return django_command(*args, settings=spec.settings)

    def _env(self, spec):
        return {**self.base_env, "DJANGO_SETTINGS_MODULE": spec.settings, "NAUTILUS_PUBLIC_URL": spec.url}

    def migrate(self):
        """Migrate every service's database, all at once (each has its own)."""
        import subprocess

        started = time.monotonic()
        self.say(f"migrating {len(self.specs)} databases")
        running = [(spec, subprocess.Popen(self._manage(spec, "migrate", "--verbosity=0", "--no-input"),
                                           env=self._env(spec), cwd=os.getcwd(), stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT)) for spec in self.specs]
        with still(self.say, "migrating"):
            for spec, process in running:
                output = process.communicate()[0].decode(errors="replace")
                if process.returncode:
                    raise CloudError(f"migrating {spec.package} failed ({process.returncode}):\n{output}")
        self.say(f"migrated {', '.join(s.package for s in self.specs)} ({time.monotonic() - started:.1f}s)")

    def start(self, specs):
        started = time.monotonic()
        children = []
        for spec in specs:
            processes = [f"--http-processes={self.gateway_processes}"] if spec.gateway and self.gateway_processes \
                else []
            child = Child(spec.package, self._manage(spec, "runservice", f"127.0.0.1:{spec.port}", *processes),
                          env=self._env(spec), cwd=os.getcwd(), printer=self.printer)
            self.children.append(child.start())
            children.append((spec, child))
        self._wait_healthy(children, started)

    def _wait_healthy(self, children, started):
        """Until each child's worker is ready and its ``/health`` answers: a line per service."""
        waiting = dict(children)
        deadline = started + self.timeout
        note_at = started + NOTE_EVERY
        while waiting:
            for spec, child in list(waiting.items()):
                if not child.running():
                    child.reported = True
                    raise CloudError(self.crash_report(child))
                if child.worker_ready.is_set() and get_json(f"{spec.url}/health", timeout=1) is not None:
                    self.say(f"{spec.package} is up on {spec.url} ({time.monotonic() - started:.1f}s)")
                    del waiting[spec]
            if time.monotonic() > deadline:
                why = {spec: health_of(spec.url, timeout=1)[1] for spec in waiting}
                raise CloudError(f"not healthy after {self.timeout}s: "
                                 + ", ".join(f"{s.package} ({why[s]})" if why[s] else s.package for s in waiting))
            if waiting and time.monotonic() >= note_at:  # never silent while it waits
                note_at += NOTE_EVERY
                self.say(f"waiting for {', '.join(s.package for s in waiting)} ({time.monotonic() - started:.0f}s)")
            time.sleep(0.2)

    def wait_for_roll_call(self, timeout=30):
        """Until the gateway knows as many services as the cloud has (its roll call was answered)."""
        expected = len(self.specs) - 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            index = get_json(f"{self.gateway.url}/?format=json")
            if index is not None and len(index["services"]) >= expected:
                return True
            time.sleep(0.3)
        return False

    def crash_report(self, child):
        lines = "\n".join(f"    {line}" for line in child.tail())
        return f"{child.name} (pid {child.pid}) exited with code {child.exit_code()}; its last lines:\n{lines}"

    def watch(self):
        """Report children that died (name, exit code, last lines), until none is left running."""
        while any(child.running() for child in self.children):
            for child in self.children:
                if not child.running() and not child.reported:
                    child.reported = True
                    self.say(self.crash_report(child))
                    child.reap_group(grace=5)
            time.sleep(0.5)
        raise CloudError("every service has stopped")

    def write_state(self):
        if self.var_dir is None:
            return
        state = {"pid": os.getpid(), "gateway": self.gateway.url if self.gateway else None,
                 "services": {c.name: {"url": s.url, "pid": c.pid, "settings": s.settings}
                              for s, c in zip(self.specs, self.children)}}
        self.var_dir.mkdir(parents=True, exist_ok=True)
        (self.var_dir / "cloud.json").write_text(json.dumps(state, indent=2))

    def stop(self):
        for child in self.children:
            child.reported = True  # stopping is not crashing
        stop_all(self.children)
        if self.var_dir is not None:
            (self.var_dir / "cloud.json").unlink(missing_ok=True)
