#!/usr/bin/env python
"""nautilus's one entry point: the service comes from --settings or DJANGO_SETTINGS_MODULE."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.recipe_book.recipes.settings")
    from django.core.management import execute_from_command_line

    from nautilus_core.brokers import UnsupportedBroker

    try:
        execute_from_command_line(sys.argv)
    except UnsupportedBroker as exc:  # refused when the settings load: one line, not a traceback
        sys.exit(f"{os.path.basename(sys.argv[0])}: {exc}")


if __name__ == "__main__":
    main()
