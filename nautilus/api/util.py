"""The original's ``nautilus.api.util``.

``create_model_schema(Model)``: the GraphQL schema a ModelService serves for a Django model,
``all_models(<filters>) { <fields> pk }`` (the filters are in the README).
"""
from model_service.schema import create_model_schema

from .._gone import gone

__all__ = ["create_model_schema"]

__getattr__ = gone(__name__, {
    name: "the gateway builds its schema from the services' announcements (gateway.schema) and runs queries "
          "with graphql-core; there is nothing to call."
    for name in ("generate_api_schema", "parse_string", "walk_query", "query_for_model", "graphql_type_from_summary",
                 "graphql_mutation_from_summary", "build_native_type_dictionary", "arg_string_from_dict")
})
