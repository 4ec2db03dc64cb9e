"""``manage.py cloud up [PATH]`` runs a whole cloud; ``manage.py cloud status [PATH]`` says how it is.

See ``nautilus_core.cloud`` for what a cloud folder is and how its services are started.
"""
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.core.management.color import supports_color

from nautilus_core.cloud import Cloud, CloudError, create_databases, discover, get_json, health_of
from nautilus_core.logs import VERBOSE_ENV, still
from nautilus_core.supervisor import LogPrinter

DEFAULT_CLOUD = "."  # the current folder: a project whose sub-packages are services


def _without_password(url):
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def _var_dir():
    """nautilus's settings' var folder; a project's own settings (without one): ``var/`` here."""
    return Path(getattr(settings, "VAR_DIR", None) or os.environ.get("NAUTILUS_VAR_DIR") or Path.cwd() / "var")


class Command(BaseCommand):
    help = "Run every service of a cloud folder as child processes (up), or list what its gateway knows (status)."
    requires_system_checks = []  # this process runs no service

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["up", "status"])
        parser.add_argument("path", nargs="?", default=DEFAULT_CLOUD,
                            help=f"the cloud folder (default {DEFAULT_CLOUD})")
        parser.add_argument("--port", type=int, default=8000,
                            help="the gateway's port; the other services take the next ones (0: any free ports)")
        parser.add_argument("--timeout", type=float, default=120, help="seconds each service has to become healthy")
        parser.add_argument("--gateway", help="status: the gateway's URL (default: the running cloud's)")
        parser.add_argument("--gateway-processes", type=int, default=None, metavar="N",
                            help="up: the gateway's HTTP processes (runservice --http-processes)")
        parser.add_argument("--verbose", action="store_true",
                            help="up: Celery's banners, task lines and warnings, and DEBUG lines of every service")

    def say(self, text):
        self.printer.line(f"{self.style.MIGRATE_HEADING('cloud:')} {text}")

    def handle(self, action, path, port, timeout, gateway, **options):
        colour = options["force_color"] or (not options["no_color"] and supports_color())
        self.printer = LogPrinter(lambda text: (self.stdout.write(text), self.stdout.flush()), colour=colour)
        if action == "status":
            return self.status(path, port, gateway)
        try:
            root, specs = discover(path, port)
        except (CloudError, ImportError) as exc:
            raise CommandError(str(exc)) from None
        if options["gateway_processes"] is not None and options["gateway_processes"] < 1:
            raise CommandError("--gateway-processes must be 1 or more")
        self.up(root, specs, timeout, options["verbose"], options["gateway_processes"])

    # -- up ------------------------------------------------------------------------------

    def up(self, root, specs, timeout, verbose=False, gateway_processes=None):
        env = {VERBOSE_ENV: "1"} if verbose else {}
        if not verbose and hasattr(os, "geteuid") and os.geteuid() == 0:  # said once, not by every worker
            self.say("running as root: Celery advises a user of its own (--uid); its warning is shown with --verbose")
        if not os.environ.get("NAUTILUS_SECRET_KEY"):
            env["NAUTILUS_DEMO"] = "1"
            self.say(f"no NAUTILUS_SECRET_KEY: running as the demo (NAUTILUS_DEMO=1, a random key kept in "
                     f"{_var_dir() / 'secret_key'}); with a broker or database server, set NAUTILUS_SECRET_KEY")
        broker, database = os.environ.get("NAUTILUS_BROKER_URL"), os.environ.get("DATABASE_URL")
        broker = _without_password(broker) if broker else f"embedded, under {_var_dir() / 'bus'}"
        database = _without_password(database) if database else f"SQLite files under {_var_dir()}"
        self.say(f"bus {broker}; databases {database}")
        if os.environ.get("NAUTILUS_BROKER_URL"):
            from kombu import Connection

            from nautilus_core.bus import BrokerUnreachable, reach_broker

            try:
                reach_broker(Connection(os.environ["NAUTILUS_BROKER_URL"]))
            except BrokerUnreachable as exc:
                raise CommandError(str(exc)) from None
        # STATIC_ROOT: the static file middleware warns without it
        (_var_dir() / "static").mkdir(parents=True, exist_ok=True)
        cloud = Cloud(specs, root, printer=self.printer, say=self.say, env=env, var_dir=_var_dir(), timeout=timeout,
                      gateway_processes=gateway_processes)

        def interrupt(signum, frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupt)  # SIGTERM stops the cloud like Ctrl-C
        try:
            create_databases(specs, self.say)
            cloud.migrate()
            cloud.start([spec for spec in specs if not spec.gateway])
            if cloud.gateway:
                cloud.start([cloud.gateway])
                with still(self.say, "waiting for the gateway's roll call"):
                    answered = cloud.wait_for_roll_call()
                if not answered:
                    self.say("the gateway does not know every service yet (see the logs above)")
            cloud.write_state()
            self.announce(cloud)
            cloud.watch()
        except KeyboardInterrupt:
            self.say("stopping…")
        except CloudError as exc:
            self.say(self.style.ERROR(str(exc)))
            raise CommandError("the cloud stopped") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            cloud.stop()
            self.say(f"stopped {len(cloud.children)} services")

    def announce(self, cloud):
        gateway = cloud.gateway
        if gateway:
            self.say(self.style.SUCCESS(f"up. GraphQL (GraphiQL in a browser): {gateway.url}/graphql"))
            self.say(f"the cloud's services (with links for staff): {gateway.url}/")
        self.say("each service's own API is internal (staff sign in at its admin; README, Configuration):")
        for spec in cloud.specs:
            self.say(f"{spec.package:<24} {spec.url}/graphql   admin {spec.url}/admin/")
        self.say("Ctrl-C stops the cloud")

    # -- status --------------------------------------------------------------------------

    def status(self, path, port, gateway):
        if gateway is None:
            state = _var_dir() / "cloud.json"
            if state.exists():
                import json

                gateway = json.loads(state.read_text())["gateway"]
            else:
                _, specs = discover(path, port)
                gateway = next((s.url for s in specs if s.gateway), None)
        if not gateway:
            raise CommandError("no gateway: pass --gateway URL")
        from nautilus_core.internal import HEADER, internal_token

        # the services' addresses are for the cloud's inside: this process shares the cloud's key
        index = get_json(f"{gateway.rstrip('/')}/?format=json", timeout=5, headers={HEADER: internal_token()})
        if index is None:
            raise CommandError(f"the gateway does not answer at {gateway}")
        services = index["services"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(_answers, services))
        self.stdout.write(f"gateway {gateway}/graphql knows {len(services)} services")
        self.stdout.write(f"{'service':<20} {'version':<13} {'state':<12} {'answers':<8} url")
        for service, (answer, why) in zip(services, answers):
            state = service.get("state", "up")
            if state != "up":
                state = f"{state} ({service.get('silent_for')}s)"
            self.stdout.write(f"{service['name']:<20} {service['version']:<13} {state:<12} {answer:<8} "
                              f"{service.get('url') or '-'}" + (f"  ({why})" if why else ""))
        # a service the gateway already reports unavailable is news, not a failure of this command
        if any(answer == "no" and service.get("state", "up") == "up"
               for service, (answer, _) in zip(services, answers)):
            raise CommandError("some services do not answer")


def _answers(service):
    """``("yes", "")`` when the service is ready (its /health; without a URL: a read ask over the bus
    within 2 s), else ``("no", what is down)``: a dead or restarting worker, the broker, the database."""
    if service.get("url"):
        ready, why = health_of(service["url"])
        return ("yes", "") if ready else ("no", why)
    from nautilus_core.actions import SUCCESS, crud_action
    from nautilus_core.bus import AskTimeout, NoHandler

    from ._bus import cli_bus

    bus = cli_bus()
    try:
        reply = bus.ask(crud_action("read", service["name"]), {"query": "{ all_models(first: 0) { pk } }"}, timeout=2)
        return ("yes", "") if reply.action_type == crud_action("read", service["name"], SUCCESS) else ("no", "")
    except (AskTimeout, NoHandler) as exc:
        return "no", str(exc)
    finally:
        bus.close()
