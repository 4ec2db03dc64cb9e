"""``manage.py startservice``: each kind of service is generated, migrated, run and asked, as generated."""
import os
import subprocess
import sys
import time

from nautilus_core.testing import ServiceProcess, free_port

from .conftest import PROJECT_DIR, graphql


def startservice(folder, *args):
    env = {**os.environ, "NAUTILUS_DEMO": "1"}
    return subprocess.run([sys.executable, "manage.py", "startservice", *args, "--directory", str(folder)],
                          cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120)


def test_generated_services_start_and_answer(tmp_path, broker_url, databases, bus):
    folder = tmp_path / "generated"
    folder.mkdir()
    for args in (("model", "recipe"), ("model", "ingredient"), ("connection", "recipe", "ingredient"),
                 ("gateway", "shop")):
        made = startservice(folder, *args)
        assert made.returncode == 0, made.stdout + made.stderr
    assert (folder / "recipe" / "migrations" / "0001_initial.py").exists()
    assert (folder / "ingredients_connection" / "migrations" / "0001_initial.py").exists()

    def env(package):
        return {"NAUTILUS_BROKER_URL": broker_url, "DATABASE_URL": databases.create(package),
                "NAUTILUS_SECRET_KEY": "tests-only", "NAUTILUS_ASK_TIMEOUT": "5",
                "PYTHONPATH": os.pathsep.join([str(folder), str(PROJECT_DIR)])}

    def manage(package, *args, env):
        return subprocess.run([sys.executable, "manage.py", *args, f"--settings={package}.settings"], cwd=PROJECT_DIR,
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=180)

    processes = []
    try:
        for package in ("recipe", "ingredient", "ingredients_connection", "shop"):
            package_env = env(package)
            migrated = manage(package, "migrate", "--verbosity=0", env=package_env)
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
            http_port = free_port() if package == "shop" else None
            processes.append(ServiceProcess(f"{package}.settings", package_env, log_dir=tmp_path,
                                            http_port=http_port).start())
        for process in processes:
            process.wait_ready()

        # the model service: create and read over the bus
        soup = bus.ask("create.recipe.pending", {"name": "soup"}, timeout=10)
        assert soup.action_type == "create.recipe.success", soup.payload
        read = bus.ask("read.recipe.pending", {"query": "{ all_models { name } }"}, timeout=10)
        assert read.payload["data"] == {"all_models": [{"name": "soup"}]}

        # the connection: a link, removed by the cascade when its recipe is deleted
        link = bus.ask("create.ingredients.pending", {"recipe": soup.payload["id"], "ingredient": "7"}, timeout=10)
        assert link.action_type == "create.ingredients.success", link.payload
        deleted = bus.ask("delete.recipe.pending", {"id": soup.payload["id"]}, timeout=10)
        assert deleted.payload["id"] == soup.payload["id"]
        deadline = time.monotonic() + 10
        while bus.ask("read.ingredients.pending", {"query": "{ all_models { pk } }"}, timeout=10).payload["data"] != {
                "all_models": []}:
            assert time.monotonic() < deadline, "the cascade did not remove the link"
            time.sleep(0.2)

        # the gateway: it learned the generated cloud from the roll call
        gateway = processes[-1]
        deadline = time.monotonic() + 30
        while True:
            status, body = graphql(gateway.url, "{ _services }")
            if status == 200 and set(body["data"]["_services"]) >= {"recipe", "ingredient", "ingredients"}:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.3)
    finally:
        for process in processes:
            process.stop()

    # and the test each package was generated with passes
    for package in ("recipe", "ingredients_connection", "shop"):
        tested = manage(package, "test", package, "--noinput", env=env(package))
        assert tested.returncode == 0, tested.stdout + tested.stderr


def test_names_that_cannot_work_are_refused(tmp_path):
    refused = startservice(tmp_path, "gateway", "gateway")  # would hide nautilus's own gateway app
    assert refused.returncode == 1 and "conflicts with the name of an existing Python module" in refused.stderr
    refused = startservice(tmp_path, "connection", "recipe")
    assert refused.returncode == 1 and "startservice connection takes 2 names" in refused.stderr
    assert not list(tmp_path.iterdir())
