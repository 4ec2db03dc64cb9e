"""``manage.py startservice model NAME | connection A B | gateway NAME``: a service that runs as generated.

Django's ``startapp`` machinery renders ``nautilus_core/service_templates/<kind>/`` into a new
package ``<directory>/<package>``: the app, its services, its settings module, a test, and
(for models and connections) its first migration, made by ``makemigrations`` in a child
process with the new settings. The package is named by its import path: in a folder of
packages (with ``__init__.py``) it is ``folder.package``, else just ``package``.

- ``model recipe`` → package ``recipe``: model ``Recipe``, ``RecipeService`` (service ``recipe``)
- ``connection recipe ingredient`` → package ``ingredients_connection``: ``Ingredients``
  (service ``ingredients``: ``recipe { ingredients }``, ``ingredient { recipes }``); ``--name`` renames it
- ``gateway api`` → package ``api``: ``ApiAPI``… named by ``--class``, by default ``<Name>API``
"""
import os
import secrets
import subprocess
from pathlib import Path

from django.core.management.base import CommandError
from django.core.management.templates import TemplateCommand

from nautilus_core.cloud import import_root
from nautilus_core.process import django_command, python_path

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "service_templates"


def camel(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


class Command(TemplateCommand):
    help = "Generate a service package (app, services, settings, migrations, a test) that starts as generated."
    missing_args_message = "Say which kind of service: model NAME, connection A B or gateway NAME."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["model", "connection", "gateway"])
        parser.add_argument("names", nargs="+", help="model/gateway: NAME; connection: FROM TO")
        parser.add_argument("--directory", default=".", help="the folder to create the package in (default: here)")
        parser.add_argument("--name", help="connection: the service name (default: the plural of TO)")
        parser.add_argument("--class", dest="class_name", help="gateway: the class name (default: <Name>API)")

    def handle(self, kind, names, directory, name, class_name, **options):
        context = self.context(kind, names, name, class_name)
        directory = Path(directory).resolve()
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a folder")
        package = context.pop("package")
        root = import_root(directory)
        prefix = ".".join(directory.relative_to(root).parts)
        context["module"] = f"{prefix}.{package}" if prefix else package
        target = directory / package
        if target.exists():
            raise CommandError(f"{target} already exists")
        target.mkdir()
        try:
            super().handle("app", package, str(target), template=str(TEMPLATES / kind), extensions=["py"], files=[],
                           verbosity=options["verbosity"], **context)
            if kind != "gateway":
                self.make_migrations(root, context["module"], package)
        except BaseException:
            import shutil

            shutil.rmtree(target, ignore_errors=True)  # nothing half-made is left behind
            raise
        self.stdout.write(self.style.SUCCESS(f"created the {kind} service {context['service_name']} in {target}"))
        port, module = (8000 if kind == "gateway" else 8001), context["module"]
        self.stdout.write(f"  migrate: python manage.py migrate --settings={module}.settings\n"
                          f"  run:     python manage.py runservice {port} --settings={module}.settings\n"
                          f"  test:    python manage.py test {module} --settings={module}.settings"
                          + (f"\n  (with {root} on PYTHONPATH)" if root != Path.cwd().resolve() else ""))

    def context(self, kind, names, name, class_name):
        expected = 2 if kind == "connection" else 1
        if len(names) != expected:
            raise CommandError(f"startservice {kind} takes {expected} name{'s' if expected > 1 else ''}")
        for value in [*names, *([name] if name else [])]:
            if not value.isidentifier():
                raise CommandError(f"{value!r} is not a valid name: use letters, digits and underscores")
        if kind == "model":
            return {"package": names[0], "service_name": names[0], "model_class": camel(names[0])}
        if kind == "connection":
            source, target = names
            service = name or f"{target}s"
            return {"package": f"{service}_connection", "service_name": service, "from_service": source,
                    "to_service": target, "connection_class": camel(service)}
        return {"package": names[0], "service_name": "api", "gateway_class": class_name or f"{camel(names[0])}API"}

    def make_migrations(self, root, module, label):
        """The app's first migration, from the generated model (or join model), in a child process."""
        # makemigrations signs nothing: a throwaway key, whatever broker the environment names
        env = {**os.environ, "NAUTILUS_SECRET_KEY": secrets.token_urlsafe(32), "DATABASE_URL": "sqlite://:memory:",
               "PYTHONPATH": python_path(root)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        made = subprocess.run(django_command("makemigrations", label, "--verbosity=0", settings=f"{module}.settings"),
                              env=env, capture_output=True, text=True, timeout=120)
        if made.returncode:
            raise CommandError(f"makemigrations failed:\n{made.stdout}{made.stderr}")
