"""Nothing to write here: the join model ``Ingredients`` (``id``, ``recipe``, ``ingredient``) is generated
from ``services.Ingredients`` by connection_service when Django starts, in this app, so
``manage.py makemigrations ingredients_connection`` and ``migrate`` treat it like a model of this module.
"""
