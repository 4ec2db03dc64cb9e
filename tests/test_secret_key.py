"""Issue 14: no public key, ever. The demo makes a random key once under its var/ folder; a service
on a broker or database server refuses to start without NAUTILUS_SECRET_KEY."""
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import PROJECT_DIR

PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def run(env, *args):
    base = {k: v for k, v in os.environ.items()
            if k not in ("NAUTILUS_SECRET_KEY", "NAUTILUS_DEMO", "NAUTILUS_BROKER_URL", "DATABASE_URL",
                         "DJANGO_SETTINGS_MODULE")}
    return subprocess.run([sys.executable, "manage.py", *args, "--settings=examples.recipe_book.recipes.settings",
                           *(["--no-imports"] if args[0] == "shell" else [])],
                          cwd=PROJECT_DIR, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_the_demo_makes_one_random_key_and_keeps_it(tmp_path):
    env = {"NAUTILUS_DEMO": "1", "NAUTILUS_VAR_DIR": str(tmp_path)}
    with ThreadPoolExecutor(max_workers=4) as pool:  # the services of one `cloud up` start together
        results = list(pool.map(lambda _: run(env, "shell", "-c", PRINT_KEY), range(4)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    keys = {r.stdout.strip() for r in results}
    kept = (tmp_path / "secret_key").read_text().strip()
    assert keys == {kept} and len(kept) >= 50
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if "secret" in p.name] == ["secret_key"]  # no drafts left
    assert run(env, "shell", "-c", PRINT_KEY).stdout.strip() == kept
    # another demo, another key: nothing constant in the source
    other = tmp_path / "other"
    assert run({**env, "NAUTILUS_VAR_DIR": str(other)}, "shell", "-c", PRINT_KEY).stdout.strip() not in ("", kept)


@pytest.mark.parametrize("server", [{"NAUTILUS_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"},
                                    {"NAUTILUS_BROKER_URL": "redis://127.0.0.1:6379/0"},
                                    {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}])
def test_no_demo_key_with_a_server(tmp_path, server):
    result = run({"NAUTILUS_DEMO": "1", "NAUTILUS_VAR_DIR": str(tmp_path), **server}, "check")
    assert result.returncode == 1
    assert "NAUTILUS_SECRET_KEY is not set, and this service uses a server" in result.stderr
    assert not (tmp_path / "secret_key").exists()
    assert run({"NAUTILUS_SECRET_KEY": "a real one", **server}, "check").returncode == 0
