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
        parser.add_argument("--verbose", action="store_true",
                            help="Celery's banner, task lines and warnings, and DEBUG lines (NAUTILUS_LOG_VERBOSE=1)")

    def handle(self, addrport, pool, concurrency, **options):
        from nautilus_core.celery import app

        if options["verbose"]:
            set_verbose()
        try:  # a wrong URL, virtual host or password stops here, said once, not retried by the worker for minutes
            reach_broker(app.connection_for_write())
        except BrokerUnreachable as exc:
            raise CommandError(str(exc)) from None
        host, _, port = addrport.rpartition(":")
        get_service().run(host=host or "127.0.0.1", port=int(port), pool=pool, concurrency=concurrency)
