"""Benchmarks: nautilus against Celery, kombu and its own flat queries, as ratios in one run.

    .venv/bin/python -m bench [--rounds 500] [--stream 3000] [--load-seconds 10] [--only roundtrip,stream,gateway,load]
                              [--brokers rabbitmq,redis] [--gateway-processes N]
                              [--load-client asyncio|threads]

Runs on each broker in turn: NAUTILUS_BROKER_URL (RabbitMQ, in a virtual host of its own) and
NAUTILUS_TEST_REDIS_URL (Redis, under a key prefix of its own), with DATABASE_URL (PostgreSQL,
databases of its own); everything is removed at the end. Each broker runs in a child process of
this one, so that the baseline Celery app meets one broker only. Every ratio is against a
baseline measured in this same run on the same broker. Prints figures; asserts nothing (the goals
are in bench/RESULTS.md), except that under load no client reads a recipe older than an update that
had returned before the client sent its query: a stale read is printed and the bench exits non-zero.
Section ``load`` runs its clients in a process of their own (bench/load.py).
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from nautilus_core.testing import (BusRecorder, Databases, ServiceProcess, free_port, manage, redis_keyspace,
                                   virtual_host)

PROJECT_DIR = Path(__file__).resolve().parent.parent  # this checkout
BROKER_URL = os.environ.get("NAUTILUS_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = os.environ.get("NAUTILUS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
DATABASE_URL = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
BOOK = "examples.recipe_book"
SERVICES = {"recipe": f"{BOOK}.recipes.settings", "ingredient": f"{BOOK}.ingredients.settings",
            "ingredients": f"{BOOK}.ingredients_connection.settings", "user": f"{BOOK}.users.settings"}
ROWS = []


def report(section, label, p50=None, p99=None, rate=None, ratio=None, note=""):
    section = f"{os.environ.get('NAUTILUS_BENCH_BROKER', '')} {section}".strip()
    ROWS.append((section, label, p50, p99, rate, ratio, note))
    cells = [f"{p50:8.2f}" if p50 is not None else " " * 8, f"{p99:8.2f}" if p99 is not None else " " * 8,
             f"{rate:9.0f}" if rate is not None else " " * 9, f"{ratio:7.2f}x" if ratio is not None else " " * 8]
    print(f"{section:18} {label:58} {' '.join(cells)}  {note}", flush=True)


def percentiles(samples):
    samples = sorted(samples)
    return statistics.median(samples) * 1000, samples[max(0, int(len(samples) * 0.99) - 1)] * 1000


def timed(call, rounds, warmup=30):
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


class Bench:
    def __init__(self, broker_url, databases, log_dir):
        from nautilus_core.bus import connect

        self.broker_url = broker_url
        self.databases = databases
        self.log_dir = log_dir
        self.processes = []
        self.bus = connect(broker_url, sender="bench")
        self.env = {"NAUTILUS_BROKER_URL": broker_url, "NAUTILUS_SECRET_KEY": "bench",
                    "PYTHONPATH": str(PROJECT_DIR)}

    def start(self, name, settings, workers=1, http=False, database=None, env=None, http_processes=None):
        env = {**self.env, "DATABASE_URL": database or self.databases.create(name), **(env or {})}
        manage(settings, "migrate", "--verbosity=0", env=env)
        started = [ServiceProcess(settings, env, log_dir=self.log_dir, name=f"bench-{name}",
                                  http_port=free_port() if http else None, http_processes=http_processes).start()
                   for _ in range(workers)]
        for process in started:
            process.wait_ready()
        self.processes.extend(started)
        return started

    def stop(self, processes):
        for process in processes:
            process.stop()
            self.processes.remove(process)

    def close(self):
        self.stop(list(self.processes))
        self.bus.close()

    def baseline_worker(self, pool="solo"):
        env = {**os.environ, "NAUTILUS_BROKER_URL": self.broker_url}
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.baseline", "worker", f"--pool={pool}",
                                   "--without-mingle", "--without-gossip", "--loglevel=WARNING"],
                                  cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from bench.baseline import noop

        noop.delay().get(timeout=60)
        return worker


def stop_process(process):
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


# -- 1. round trips ------------------------------------------------------------------------------

def roundtrip(bench, args):
    from bench.baseline import KombuClient, noop

    worker = bench.baseline_worker()
    try:
        celery = timed(lambda: noop.delay().get(timeout=10), args.rounds)
    finally:
        stop_process(worker)
    report("roundtrip", "bare Celery delay().get(), no-op task, solo", *celery, ratio=1.0)
    if bench.broker_url.startswith("amqp"):  # direct reply-to is RabbitMQ's
        server = subprocess.Popen([sys.executable, "-m", "bench.baseline", "kombu-server", bench.broker_url],
                                  cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
        try:
            server.stdout.readline()
            client = KombuClient(bench.broker_url)
            kombu = timed(client.call, args.rounds)
            client.close()
        finally:
            stop_process(server)
        report("roundtrip", "kombu RPC, direct reply-to", *kombu, ratio=kombu[0] / celery[0])

    recipe = bench.start("recipe", SERVICES["recipe"])
    create = timed(lambda: bench.bus.ask("create.recipe.pending", {"name": "bench"}, timeout=10), args.rounds)
    read = timed(lambda: bench.bus.ask("read.recipe.pending", {"query": "{ all_models(first: 10) { pk name } }"},
                                       timeout=10), args.rounds)
    bench.stop(recipe)
    report("roundtrip", "nautilus ask create.recipe.pending (ORM write)", *create, ratio=create[0] / celery[0],
           note=f"vs bare Celery; p99 {create[1] / create[0]:.2f}x its p50")
    report("roundtrip", "nautilus ask read.recipe.pending (first: 10)", *read, ratio=read[0] / celery[0],
           note="vs bare Celery")


# -- 2. sustained streams ------------------------------------------------------------------------

def stream(bench, args):
    from bench.baseline import noop

    n = args.stream
    worker = bench.baseline_worker()
    try:
        start = time.perf_counter()
        for _ in range(n - 1):
            noop.apply_async(ignore_result=True)
        noop.delay().get(timeout=300)  # one queue, one solo worker: in order, so the last is the end
        celery_rate = n / (time.perf_counter() - start)
    finally:
        stop_process(worker)
    report("stream", f"bare Celery fire-and-forget, {n} no-op tasks, solo", rate=celery_rate, ratio=1.0,
           note="tasks/s end to end")

    one_worker = None
    for workers, batch in ((1, None), (2, None), (1, 0)):
        database = bench.databases.create(f"stream{workers}{batch}")
        env = {"NAUTILUS_BATCH_SIZE": str(batch)} if batch is not None else {}
        processes = bench.start("recipe", SERVICES["recipe"], workers=workers, database=database, env=env)
        used = [worker_usage(process.pid) for process in processes]
        start = time.perf_counter()
        for i in range(n):
            bench.bus.publish("create.recipe.pending", {"name": f"stream-{i}"})
        while _count(bench, n) < n:  # the reads queue behind the creates: few polls
            time.sleep(0.05)
        rate = n / (time.perf_counter() - start)
        after = [worker_usage(process.pid) for process in processes]
        bench.stop(processes)
        cpu = sum(a[0] - u[0] for a, u in zip(after, used)) * 1000 / n
        rss = max(a[1] for a in after)
        label = f"{workers} worker(s)" + (", batching off (NAUTILUS_BATCH_SIZE=0)" if batch == 0 else "")
        note = f"actions/s, vs Celery fire-and-forget; worker CPU {cpu:.2f} s per 1,000 actions, RSS {rss:.0f} MiB"
        if workers == 2:
            note += f"; {rate / one_worker:.2f}x the 1-worker figure"
        one_worker = one_worker or rate
        report("stream", f"nautilus create actions end to end, {label}", rate=rate, ratio=rate / celery_rate,
               note=note)


def worker_usage(pid):
    """``(CPU seconds, RSS in MiB)`` of a process so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return (int(fields[11]) + int(fields[12])) / ticks, rss / 1024


def _count(bench, n):
    reply = bench.bus.ask("read.recipe.pending", {"query": "{ all_models(offset: %d) { pk } }" % (n - 1)}, timeout=30)
    return n - 1 + len(reply.payload["data"]["all_models"])


# -- 3. and 4. the gateway -------------------------------------------------------------------------

def gateway_cloud(bench, args):
    for name, settings in SERVICES.items():
        bench.start(name, settings)
    gateway, = bench.start("gateway", f"{BOOK}.gateway.settings", http=True, http_processes=args.gateway_processes)
    host, port = "127.0.0.1", gateway.http_port
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = _post(http.client.HTTPConnection(host, port), "{ _services }")
        if set(SERVICES) <= set((body.get("data") or {}).get("_services") or []):
            break
        time.sleep(0.2)
    ingredients = [bench.bus.ask("create.ingredient.pending", {"name": f"i{n}"}, timeout=10).payload["id"]
                   for n in range(50)]
    for r in range(100):
        recipe = bench.bus.ask("create.recipe.pending", {"name": f"r{r}"}, timeout=10).payload["id"]
        for k in range(5):
            bench.bus.ask("create.ingredients.pending", {"recipe": recipe, "ingredient": ingredients[(r + 7 * k) % 50]},
                          timeout=10)
    return host, port


def _post(connection, query, variables=None, headers=None):
    connection.request("POST", "/graphql", json.dumps({"query": query, "variables": variables or {}}),
                       {"Content-Type": "application/json", **(headers or {})})
    return json.loads(connection.getresponse().read())


FLAT = "{ recipe(first: 100) { name servings } }"
NESTED = "{ recipe(first: 100) { name servings ingredients { name } } }"


def gateway(bench, args, host, port):
    connection = http.client.HTTPConnection(host, port)
    results = {}
    for label, query in (("flat: 100 recipes", FLAT), ("nested: 100 recipes x 5 ingredients", NESTED)):
        body = _post(connection, query)
        assert "errors" not in body, body
        reads = BusRecorder(bench.broker_url, ["read.*.pending"])
        _post(connection, query)
        reads.drain(0.5)
        asks = Counter(e["action_type"].split(".")[1] for e in reads.envelopes if e["sender"] == "api")
        reads.close()
        results[label] = timed(lambda: _post(connection, query), args.rounds // 2, warmup=10)
        results[label + " asks"] = asks
    flat = results["flat: 100 recipes"]
    for label in ("flat: 100 recipes", "nested: 100 recipes x 5 ingredients"):
        asks = results[label + " asks"]
        report("gateway", f"{label} ({sum(asks.values())} asks: {dict(asks)})", *results[label],
               ratio=results[label][0] / flat[0], note="vs flat")


REGISTER = "mutation($e: String!, $p: String!) { registerUser(email: $e, password: $p) { sessionToken } }"
CREATE = "mutation($n: String!) { createRecipe(name: $n, description: \"v0\") { recipe { id } } }"
STALE = []  # stale reads seen by the load with a writer: a correctness failure, the bench exits non-zero


def generate(host, port, seconds, clients, *options):
    """Run bench.load (the load generator, a process of its own) and return what it measured."""
    done = subprocess.run([sys.executable, "-m", "bench.load", "--host", host, "--port", str(port),
                           "--seconds", str(seconds), "--clients", str(clients), *options],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode:
        raise RuntimeError(f"bench.load failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def load(bench, args, host, port, clients=50):
    processes = f", {args.gateway_processes} HTTP processes" if args.gateway_processes else ""
    out = generate(host, port, args.load_seconds, clients, "--query", "{ recipe(first: 10) { name } }",
                   "--kind", args.load_client)
    p50, p99 = percentiles(out["latencies"])
    report("load", f"gateway{processes}, {clients} concurrent clients, {args.load_seconds:g}s, first: 10", p50, p99,
           rate=len(out["latencies"]) / out["elapsed"],
           note=f"queries/s; errors: {sum(out['errors'].values())} {out['errors'] or ''}; generator in its own "
                f"process ({args.load_client}), {out['cpu'] / out['elapsed']:.0%} of a core")
    if args.load_client != "asyncio":
        return  # the writer runs on the generator's event loop
    # the same load while a writer changes 10 recipes/s through the gateway, readers reading those recipes
    connection = http.client.HTTPConnection(host, port)
    body = _post(connection, REGISTER, {"e": f"writer-{uuid.uuid4().hex[:8]}@bench.example", "p": "bench writer pw"})
    token = body["data"]["registerUser"]["sessionToken"]
    auth = {"Authorization": f"Bearer {token}"}
    pks = [_post(connection, CREATE, {"n": f"w{n}"}, auth)["data"]["createRecipe"]["recipe"]["id"] for n in range(10)]
    out = generate(host, port, args.load_seconds, clients, "--token", token, "--recipes", ",".join(pks),
                   "--writes-per-second", "10")
    p50, p99 = percentiles(out["latencies"])
    w50, w99 = percentiles(out["write_latencies"] or [0])
    stale = out["stale"]
    report("load", f"gateway{processes}, {clients} clients + a writer updating 10 recipes/s", p50, p99,
           rate=len(out["latencies"]) / out["elapsed"],
           note=f"queries/s; STALE READS: {stale} (must be 0); {out['writes'] / out['elapsed']:.1f} writes/s, "
                f"write p50 {w50:.1f} / p99 {w99:.1f} ms; errors: {sum(out['errors'].values())} "
                f"{out['errors'] or ''}; generator and writer in one process of their own")
    if stale:
        STALE.append(stale)
        print(f"!!! {stale} STALE READS: a client read a recipe older than an update that had already returned "
              f"before it sent its query, e.g. {out['stale_examples']}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--stream", type=int, default=3000)
    parser.add_argument("--load-seconds", type=float, default=10)
    parser.add_argument("--load-client", choices=("asyncio", "threads"), default="asyncio",
                        help="section load's clients: one event loop (default) or a thread each (http.client)")
    parser.add_argument("--only", default="roundtrip,stream,gateway,load")
    parser.add_argument("--brokers", default="rabbitmq,redis", help="rabbitmq, redis or both, in this order")
    parser.add_argument("--gateway-processes", type=int, default=None,
                        help="the gateway's HTTP processes (runservice --http-processes; default 1)")
    args = parser.parse_args()
    brokers = args.brokers.split(",")
    if "NAUTILUS_BENCH_QUIET_HEADER" not in os.environ:
        print(f"{'section':18} {'figure':58} {'p50 ms':>8} {'p99 ms':>8} {'rate/s':>9} {'ratio':>8}", flush=True)
    if len(brokers) > 1:  # one child per broker, so that the baseline Celery app meets one broker only
        failed = 0
        for broker in brokers:
            argv = [arg for n, arg in enumerate(sys.argv[1:]) if not arg.startswith("--brokers")
                    and sys.argv[n] != "--brokers"]  # "--brokers=a,b" or "--brokers a,b"
            failed |= subprocess.run([sys.executable, "-m", "bench", *argv, f"--brokers={broker}"], cwd=PROJECT_DIR,
                                     env={**os.environ, "NAUTILUS_BENCH_QUIET_HEADER": "1"}).returncode
        sys.exit(failed)
    run = uuid.uuid4().hex[:8]
    databases = Databases(DATABASE_URL, prefix=f"nautilus_bench_{run}")
    log_dir = f"/tmp/nautilus-bench-{run}"
    os.makedirs(log_dir, exist_ok=True)
    os.environ["NAUTILUS_BENCH_BROKER"] = brokers[0]
    if brokers[0] == "redis":
        # the baseline is bare Celery on kombu's own Redis transport, under the same key prefix
        space = redis_keyspace(REDIS_URL, f"nautilus-bench-{run}:")
    elif brokers[0] == "rabbitmq":
        space = virtual_host(BROKER_URL, f"nautilus-bench-{run}")
    else:
        parser.error(f"unknown broker {brokers[0]!r}: rabbitmq or redis")
    try:
        with space as broker_url:
            os.environ["NAUTILUS_BROKER_URL"] = broker_url  # for the baseline Celery app
            from bench.baseline import app

            app.conf.broker_url = broker_url
            run_sections(Bench(broker_url, databases, log_dir), args)
    finally:
        databases.drop_all()
    if STALE:
        sys.exit(f"stale reads under load: {sum(STALE)}")


def run_sections(bench, args):
    sections = set(args.only.split(","))
    try:
        if "roundtrip" in sections:
            roundtrip(bench, args)
        if "stream" in sections:
            stream(bench, args)
        if sections & {"gateway", "load"}:
            host, port = gateway_cloud(bench, args)
            if "gateway" in sections:
                gateway(bench, args, host, port)
            if "load" in sections:
                load(bench, args, host, port)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
