"""The layout a newcomer can guess stays that way (issue 19, item 4).

- no import circle among ``nautilus_core``'s modules, counting imports inside functions (an import
  moved into a function to dodge a circle is still a circle);
- every module of the gateway does one job and stays under ``GATEWAY_MODULE_LINES`` lines;
- a model service (``import nautilus``, its services, its worker) does not load the gateway.

Imports are read from the source with ``ast``; nothing of the project is run but the last test's subprocess.
"""
import ast
import os
import subprocess
import sys

from .conftest import PROJECT_DIR, RECIPES

GATEWAY_MODULE_LINES = 250


def module_name(path):
    parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(package):
    """``{dotted name: path}`` of a package's modules (migrations left out)."""
    return {module_name(path): path for path in sorted((PROJECT_DIR / package).rglob("*.py"))
            if "migrations" not in path.parts}


def imported(name, path, known):
    """The modules of ``known`` that the module ``name`` imports, anywhere in it (functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def circles(graph):
    """Each import circle of ``graph`` (``{module: modules it imports}``) as a list of modules, or []."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_circles_are_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_function_level_imports_count():
    known = modules_of("nautilus_core")
    assert "nautilus_core.bus" in imported("nautilus_core.service", known["nautilus_core.service"], known)


def test_no_import_circle_in_nautilus_core():
    known = modules_of("nautilus_core")
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert circles(graph) == []


def test_the_celery_app_the_worker_and_the_registry_are_modules_of_their_own():
    known = modules_of("nautilus_core")
    assert imported("nautilus_core.celery", known["nautilus_core.celery"], known) == set()
    assert {"nautilus_core.celery", "nautilus_core.registry"} <= imported("nautilus_core.worker",
                                                                          known["nautilus_core.worker"], known)
    assert imported("nautilus_core.registry", known["nautilus_core.registry"], known) == {"nautilus_core.conf"}


def test_gateway_modules_stay_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules_of("gateway").items()}
    assert {name: lines for name, lines in sizes.items() if lines >= GATEWAY_MODULE_LINES} == {}


def test_a_model_service_does_not_load_the_gateway():
    code = ("import sys, nautilus, django\n"
            "django.setup()\n"
            "import examples.recipe_book.recipes.services\n"
            "from nautilus_core.registry import get_service\n"
            "service = get_service(); service.queue(); service.summarize()\n"
            "import nautilus_core.worker, nautilus_core.urls, nautilus_core.checks\n"
            "print(type(service).__name__, sorted(m for m in sys.modules if m.split('.')[0] == 'gateway'))\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": RECIPES}
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "RecipeService []", done.stdout + done.stderr
