"""Benchmarks: nautilus against a bare Celery task measured in the same run, as ratios.

    ./dev test is not needed; run:  .venv/bin/python -m bench [--rounds N]

Uses NAUTILUS_BROKER_URL (RabbitMQ) and DATABASE_URL (PostgreSQL) like the tests, in a
virtual host and databases of its own. Prints figures; asserts nothing.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

from nautilus_core.testing import PROJECT_DIR, Databases, ServiceProcess, manage, virtual_host

BROKER_URL = os.environ.get("NAUTILUS_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
DATABASE_URL = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
RECIPES = "examples.recipe_book.recipes.settings"


def percentiles(samples):
    samples = sorted(samples)
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


def timed(call, rounds, warmup=50):
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def celery_baseline(broker_url, rounds):
    env = {**os.environ, "NAUTILUS_BROKER_URL": broker_url}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.baseline", "worker", "--pool=solo",
                               "--without-mingle", "--without-gossip", "--loglevel=WARNING"],
                              cwd=PROJECT_DIR, env=env)
    try:
        os.environ["NAUTILUS_BROKER_URL"] = broker_url
        from bench.baseline import noop

        noop.delay().get(timeout=60)  # the worker is up
        return timed(lambda: noop.delay().get(timeout=10), rounds)
    finally:
        worker.terminate()
        worker.wait(20)


def nautilus_asks(broker_url, databases, rounds):
    from nautilus_core.bus import connect

    env = {"NAUTILUS_BROKER_URL": broker_url, "DATABASE_URL": databases.create("recipes"),
           "NAUTILUS_SECRET_KEY": "bench"}
    manage(RECIPES, "migrate", "--verbosity=0", env=env)
    bus = connect(broker_url, sender="bench")
    with ServiceProcess(RECIPES, env, name="bench-recipe"):
        create = timed(lambda: bus.ask("create.recipe.pending", {"name": "bench"}, timeout=10), rounds)
        read = timed(lambda: bus.ask("read.recipe.pending",
                                     {"query": "{ all_models(first: 10) { pk name } }"}, timeout=10), rounds)
    bus.close()
    return create, read


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    rounds = parser.parse_args().rounds
    run = uuid.uuid4().hex[:8]
    databases = Databases(DATABASE_URL, prefix=f"nautilus_bench_{run}")
    try:
        with virtual_host(BROKER_URL, f"nautilus-bench-{run}") as broker_url:
            baseline = celery_baseline(broker_url, rounds)
            create, read = nautilus_asks(broker_url, databases, rounds)
    finally:
        databases.drop_all()
    print(f"{'round trip (' + str(rounds) + ' each)':44} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>10}")
    for label, (p50, p99) in [("bare Celery delay().get(), no-op, solo", baseline),
                              ("nautilus ask create.recipe.pending (ORM write)", create),
                              ("nautilus ask read.recipe.pending (first: 10)", read)]:
        print(f"{label:44} {p50:8.2f} {p99:8.2f} {p50 / baseline[0]:9.2f}x")


if __name__ == "__main__":
    main()
