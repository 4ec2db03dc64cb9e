"""A ModelService's own GraphQL schema: ``all_models(<filters>) { <fields> pk }``."""
import functools

import graphene
from graphql import ExecutionResult, GraphQLError, execute, parse, validate

from nautilus_core.types import scalar

from .fields import field_value, graphql_type, model_fields
from .filters import filter_arguments, filter_model

__all__ = ["ROOT_QUERY", "create_model_schema", "model_object_type", "execute_query"]

ROOT_QUERY = "all_models"


def _resolver(field):
    return lambda row, info: field_value(field, row)


def model_object_type(model):
    """A graphene ObjectType with one scalar per field (foreign keys as ids) and ``pk``."""
    attrs = {"pk": graphene.ID(resolver=lambda row, info: row.pk)}
    for field in model_fields(model):
        attrs[field.name] = graphene.Field(scalar(graphql_type(field)), resolver=_resolver(field))
    return type(model.__name__, (graphene.ObjectType,), attrs)


def create_model_schema(model):
    object_type = model_object_type(model)

    def resolve_all_models(root, info, **args):
        return filter_model(model, args)

    query = type("Query", (graphene.ObjectType,), {
        ROOT_QUERY: graphene.Field(
            graphene.List(object_type), args=filter_arguments(model), resolver=resolve_all_models),
    })
    return graphene.Schema(query=query, auto_camelcase=False)


@functools.lru_cache(maxsize=512)
def _document(schema, query):
    """Parse and validate a query once: askers (the gateway) repeat a few shapes with new variables."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, [error]
    return document, validate(schema.graphql_schema, document)


def execute_query(schema, query, variables=None):
    document, errors = _document(schema, query)
    if errors:
        return ExecutionResult(data=None, errors=errors)
    return execute(schema.graphql_schema, document, variable_values=variables)
