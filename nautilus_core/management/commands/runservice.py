from django.core.management.base import BaseCommand, CommandError

from nautilus_core.bus import BrokerUnreachable, reach_broker
from nautilus_core.logs import set_verbose
from nautilus_core.service import get_service


class Command(BaseCommand):
    help = "Run this service: its HTTP API (/graphql, /admin/, /health) and a worker for its actions."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="[host:]port to serve HTTP on")
        parser.add_argument("--pool", default="solo", help="Celery worker pool (solo, prefork, threads)")
        parser.add_argument("--concurrency", type=int, default=None, help="worker concurrency (not for solo)")
        parser.add_argument("--http-processes", type=int, default=None, metavar="N",
                            help="HTTP processes on the one port, each with its own connections and feed of the bus "
                                 "(default: NAUTILUS_HTTP_PROCESSES, 1)")
        parser.add_argument("--verbose", action="store_true",
                            help="Celery's banner, task lines and warnings, and DEBUG lines (NAUTILUS_LOG_VERBOSE=1)")

    def handle(self, addrport, pool, concurrency, **options):
        from nautilus_core.celery import app
        from nautilus_core.conf import nautilus_settings

        http_processes = options["http_processes"]
        if http_processes is None:
            http_processes = nautilus_settings.HTTP_PROCESSES
        if http_processes < 1:
            raise CommandError(f"--http-processes (NAUTILUS_HTTP_PROCESSES) must be 1 or more, not {http_processes}")
        if options["verbose"]:
            set_verbose()
        try:  # a wrong URL, virtual host or password stops here, said once, not retried by the worker for minutes
            reach_broker(app.connection_for_write())
        except BrokerUnreachable as exc:
            raise CommandError(str(exc)) from None
        host, _, port = addrport.rpartition(":")
        get_service().run(host=host or "127.0.0.1", port=int(port), pool=pool, concurrency=concurrency,
                          http_processes=http_processes)
