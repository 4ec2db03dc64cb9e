"""nautilus from a wheel, in a fresh virtualenv, in a project made by ``django-admin startproject``.

The wheel is built from a copy of the five packages (nothing of this checkout is on the
path afterwards). Dependencies: the pinned ``requirements.txt`` is installed first (from
pip's cache after the first run), then the wheel *with* its dependencies, so pip checks
``[project]``'s ranges against the pins. The project then scaffolds services with
``startservice``, runs them with ``cloud up`` (``runservice`` per service) on RabbitMQ and
PostgreSQL, answers a query through its gateway, and runs a scaffolded service's tests
(which use the test kit's in-memory bus).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib

import psycopg
import pytest

from nautilus_core.bus import connect

from .conftest import DATABASE_URL, PROJECT_DIR, RUN_ID, graphql
from .test_cloud import GATEWAY_URL, alive, descendants

PACKAGES = ("nautilus", "nautilus_core", "model_service", "connection_service", "gateway")


def run(*command, cwd=None, env=None, timeout=600):
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_project_dependencies_cover_the_pinned_runtime_set():
    """Every runtime pin of requirements.txt is a dependency of the package or of one of its extras
    (OpenTelemetry's SDK: ``nautilus[otel]``); tests' pins are not."""
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    extras = [d for group in project.get("optional-dependencies", {}).values() for d in group]
    declared = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"] + extras}
    text = (PROJECT_DIR / "requirements.txt").read_text().split("# tests")[0]
    pinned = {line.split("==")[0].split("[")[0].lower() for line in text.splitlines()
              if line.strip() and not line.startswith("#")}
    assert pinned <= declared, pinned - declared


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtualenv with requirements.txt and nautilus's wheel; returns its bin folder."""
    folder = tmp_path_factory.mktemp("install")
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_DIR / name, source / name)
    for package in PACKAGES:
        shutil.copytree(PROJECT_DIR / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run(sys.executable, "-m", "venv", folder / "venv")
    bin_dir = folder / "venv" / "bin"
    pip = [bin_dir / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    run(*pip, "install", "-r", PROJECT_DIR / "requirements.txt")
    run(*pip, "wheel", "--no-deps", "-w", folder / "wheels", source)
    wheel, = (folder / "wheels").glob("nautilus-*.whl")
    run(*pip, "install", wheel)  # with dependencies: each must be satisfied by the pinned set
    run(*pip, "check")
    return bin_dir


def clean_env(**extra):
    """The environment of a user's shell: nothing pointing into this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NAUTILUS_", "DJANGO_", "DATABASE_URL"))
           and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


def test_the_wheel_holds_templates_migrations_and_static_files(installed):
    listing = run(installed / "python", "-c", (
        "import importlib.resources as r, nautilus_core, gateway, model_service\n"
        "print(nautilus_core.__file__)\n"
        "print((r.files('nautilus_core') / 'service_templates' / 'model' / 'models.py-tpl').is_file())\n"
        "print((r.files('gateway') / 'templates' / 'gateway' / 'index.html').is_file())\n"
        "print((r.files('gateway') / 'migrations' / '0001_initial.py').is_file())\n"
        "print((r.files('graphene_django_graphiql_static')).is_dir())\n"), cwd=installed, env=clean_env())
    lines = listing.split()
    assert "site-packages" in lines[0] and str(PROJECT_DIR) not in lines[0], lines
    assert lines[1:] == ["True"] * 4, lines


def test_a_startproject_project_runs_a_cloud(installed, tmp_path, broker_url):
    project = tmp_path / "shop"
    project.mkdir()
    run(installed / "django-admin", "startproject", "shop", project, env=clean_env())
    settings = project / "shop" / "settings.py"
    text = settings.read_text()
    assert "'django.contrib.staticfiles'," in text
    settings.write_text(text.replace("'django.contrib.staticfiles',",
                                     "'django.contrib.staticfiles',\n    'nautilus_core',"))
    (project / "services").mkdir()
    (project / "services" / "__init__.py").write_text("")
    env = clean_env(NAUTILUS_DEMO="1")
    manage = [installed / "python", "manage.py"]
    for args in (("model", "recipe"), ("model", "ingredient"), ("connection", "recipe", "ingredient"),
                 ("gateway", "api")):
        run(*manage, "startservice", *args, "--directory", "services", cwd=project, env=env)
    assert (project / "services" / "recipe" / "migrations" / "0001_initial.py").exists()

    # the scaffolded tests pass, on SQLite, with the test kit of the installed package
    for package in ("recipe", "ingredients_connection"):
        tested = subprocess.run([*map(str, manage), "test", f"services.{package}", "--noinput",
                                 f"--settings=services.{package}.settings"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert tested.returncode == 0 and re.search(r"Ran [1-9]\d* tests?\b", tested.stderr), tested.stderr[-3000:]

    # pytest finds the test kit's plugin through the package's entry point
    fixtures = run(installed / "python", "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", cwd=project, env=env)
    assert "nautilus_memory_bus" in fixtures and "nautilus_cloud" in fixtures, fixtures[-3000:]

    prefix = f"nautilus_pkg_{RUN_ID}"
    cloud_env = clean_env(NAUTILUS_BROKER_URL=broker_url, NAUTILUS_SECRET_KEY="tests-only",
                          DATABASE_URL=re.sub(r"/[^/]*$", f"/{prefix}_{{service}}", DATABASE_URL))
    cloud = subprocess.Popen([*map(str, manage), "cloud", "up", "services", "--port", "0", "--no-color"],
                             cwd=project, env=cloud_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(line.rstrip() for line in cloud.stdout), daemon=True).start()
    pids = set()
    bus = connect(broker_url, sender="test")
    try:
        deadline = time.monotonic() + 240
        while not (match := GATEWAY_URL.search("\n".join(lines))):
            assert cloud.poll() is None and time.monotonic() < deadline, "\n".join(lines)[-6000:]
            time.sleep(0.3)
        url = match.group(1)
        pids |= descendants(cloud.pid)
        created = bus.ask("create.recipe.pending", {"name": "soup"}, timeout=20)
        assert created.action_type == "create.recipe.success", created.payload
        deadline = time.monotonic() + 30
        while True:  # the gateway learned the cloud from its roll call
            status, body = graphql(url, "{ recipe { name ingredients { name } } }")
            if status == 200 and body.get("data") == {"recipe": [{"name": "soup", "ingredients": []}]}:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.3)
    finally:
        bus.close()
        pids |= descendants(cloud.pid)
        cloud.send_signal(signal.SIGTERM)
        try:
            code = cloud.wait(60)
        except subprocess.TimeoutExpired:
            cloud.kill()
            code = cloud.wait()
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            for (name,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{prefix}_%"]):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    output = "\n".join(lines)
    assert code == 0 and "stopped 4 services" in output, output[-4000:]
    assert not [pid for pid in pids if alive(pid)]
