"""Django commands in child processes, wherever nautilus is installed.

A child runs ``python -m django <command> --settings=<module>`` with this interpreter, in
the current folder (the project's, which ``-m`` puts first on ``sys.path``): no path of
nautilus's own checkout is needed, so the same code runs from a wheel in any project.
"""
import os
import sys

__all__ = ["django_command", "python_path"]


def django_command(*args, settings=None):
    """The command line of ``django-admin <args>`` for this interpreter (and ``--settings``)."""
    return [sys.executable, "-m", "django", *args, *([f"--settings={settings}"] if settings else [])]


def python_path(*folders):
    """``PYTHONPATH`` for a child: ``folders``, the current folder, then the inherited value."""
    entries = [*(str(f) for f in folders), os.getcwd(), os.environ.get("PYTHONPATH")]
    return os.pathsep.join(dict.fromkeys(e for e in entries if e))
