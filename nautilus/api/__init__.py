"""The original's ``nautilus.api``: GraphQL helpers (see ``nautilus.api.util``)."""
from .._gone import gone

__getattr__ = gone(__name__, {
    "Schema": "use graphene.Schema (a service's schema from create_model_schema is one, with auto_camelcase off).",
})
