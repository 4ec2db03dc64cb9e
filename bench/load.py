"""The load generator of ``python -m bench`` (section ``load``), in a process of its own.

    .venv/bin/python -m bench.load --host H --port P [--clients 50] [--seconds 10] [--query Q] [--kind asyncio]
                                   [--token T --recipes PK,PK,... --writes-per-second 10]

Runs apart from the bench so that its clients share no GIL with the bench's own work. Each client keeps
one HTTP/1.1 connection to the gateway (``--kind asyncio``: a small hand-rolled client on one event
loop, the default, cheaper on CPU; ``--kind threads``: one thread per client with http.client).

With ``--token``, a writer on the same clock (same process) sends ``updateRecipe`` through the gateway
at ``--writes-per-second``, one of ``--recipes`` at a time, setting its description to ``v<counter>``
(strictly increasing), and the readers read those recipes. A stale read: a reader got a counter older
than one that an update of that recipe had already returned to the writer before the reader sent its
query.

Prints one JSON object on stdout: latencies (s), errors by kind, elapsed, the process's CPU seconds,
and with a writer: writes, write latencies, stale reads and a few of them.
"""
import argparse
import asyncio
import http.client
import json
import resource
import threading
import time
from collections import Counter

READ = "{ recipe(first: 10) { name } }"
UPDATE = "mutation($id: ID!, $d: String) { updateRecipe(id: $id, description: $d) { recipe { id } } }"


class Client:
    """One persistent HTTP/1.1 connection, POST /graphql, JSON in and out."""

    def __init__(self, host, port, headers=None):
        self.host, self.port, self.reader, self.writer = host, port, None, None
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.head = (f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                     f"{extra}Content-Length: %d\r\n\r\n").encode()

    async def post(self, query, variables=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)  # TCP_NODELAY set
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        self.writer.write(self.head % len(body) + body)
        status = await self.reader.readline()
        if not status.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"status {status[:40]!r}")
        length, chunked = None, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readline()
            payload = b"".join(part[:-2] for part in parts)
        else:
            payload = await self.reader.readexactly(length)
        return json.loads(payload)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Run:
    def __init__(self, args):
        self.args = args
        self.latencies, self.errors = [], Counter()
        self.pks = args.recipes.split(",") if args.recipes else []
        self.query = '{ recipe(pk_in: [%s]) { pk description } }' % ", ".join(f'"{pk}"' for pk in self.pks) \
            if self.pks else args.query
        self.latest = dict.fromkeys(self.pks, 0)  # counter of the last update returned to the writer, by pk
        self.writes, self.write_latencies, self.stale, self.stale_examples = 0, [], 0, []

    def check(self, body, expected):
        """Count the rows of ``body`` older than ``expected`` (``latest`` when the query was sent)."""
        if "errors" in body:
            self.errors["graphql"] += 1
            return
        if not self.pks:
            return
        for row in body["data"]["recipe"]:
            got = int(row["description"][1:] or 0)
            if got < expected[row["pk"]]:
                self.stale += 1
                if len(self.stale_examples) < 5:
                    self.stale_examples.append({"pk": row["pk"], "read": got,
                                                "returned_before_sent": expected[row["pk"]]})

    # -- asyncio --------------------------------------------------------------------------------

    async def reader(self, stop):
        client, mine = Client(self.args.host, self.args.port), []
        while time.monotonic() < stop:
            expected, sent = dict(self.latest), time.monotonic()
            try:
                body = await client.post(self.query)
                self.check(body, expected)
            except Exception as exc:  # counted, and the client reconnects
                self.errors[type(exc).__name__] += 1
                client.close()
            mine.append(time.monotonic() - sent)
        client.close()
        self.latencies.extend(mine)

    async def writer(self, stop):
        client = Client(self.args.host, self.args.port, {"Authorization": f"Bearer {self.args.token}"})
        period, due = 1 / self.args.writes_per_second, time.monotonic()
        while (due := due + period) < stop:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            counter = self.writes + 1
            pk = self.pks[counter % len(self.pks)]
            sent = time.monotonic()
            try:
                body = await client.post(UPDATE, {"id": pk, "d": f"v{counter}"})
            except Exception as exc:
                self.errors[f"writer {type(exc).__name__}"] += 1
                client.close()
                continue
            if "errors" in body:
                self.errors["writer graphql"] += 1
                continue
            self.latest[pk] = counter  # returned: every read sent from now on must see it
            self.writes = counter
            self.write_latencies.append(time.monotonic() - sent)
        client.close()

    async def run_asyncio(self, stop):
        tasks = [self.reader(stop) for _ in range(self.args.clients)]
        if self.args.token:
            tasks.append(self.writer(stop))
        await asyncio.gather(*tasks)

    # -- threads (http.client, one thread per client) --------------------------------------------

    def thread_reader(self, stop, lock):
        connection, mine = http.client.HTTPConnection(self.args.host, self.args.port, timeout=30), []
        data = json.dumps({"query": self.query}).encode()
        while time.monotonic() < stop:
            expected, sent = dict(self.latest), time.monotonic()
            try:
                connection.request("POST", "/graphql", data, {"Content-Type": "application/json"})
                self.check(json.loads(connection.getresponse().read()), expected)
            except Exception as exc:
                self.errors[type(exc).__name__] += 1
                connection = http.client.HTTPConnection(self.args.host, self.args.port, timeout=30)
            mine.append(time.monotonic() - sent)
        with lock:
            self.latencies.extend(mine)

    def run_threads(self, stop):
        if self.args.token:
            raise SystemExit("--kind threads has no writer")
        lock = threading.Lock()
        threads = [threading.Thread(target=self.thread_reader, args=(stop, lock)) for _ in range(self.args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--query", default=READ)
    parser.add_argument("--kind", choices=("asyncio", "threads"), default="asyncio")
    parser.add_argument("--token", help="a session token: run the writer, as this user")
    parser.add_argument("--recipes", help="the writer's recipes (comma-separated pks, the user's own)")
    parser.add_argument("--writes-per-second", type=float, default=10)
    args = parser.parse_args()
    if args.token and not args.recipes:
        parser.error("--token needs --recipes")
    run = Run(args)
    cpu_before, started = cpu(), time.monotonic()
    stop = started + args.seconds
    if args.kind == "asyncio":
        asyncio.run(run.run_asyncio(stop))
    else:
        run.run_threads(stop)
    elapsed = time.monotonic() - started
    print(json.dumps({"latencies": run.latencies, "errors": dict(run.errors), "elapsed": elapsed,
                      "cpu": cpu() - cpu_before, "writes": run.writes, "write_latencies": run.write_latencies,
                      "stale": run.stale, "stale_examples": run.stale_examples}))


if __name__ == "__main__":
    main()
