"""A ModelService's own GraphQL schema: ``all_models(<filters>) { <fields> pk }``."""
import graphene

from nautilus_core.filters import filter_arguments
from nautilus_core.types import scalar

from .fields import field_value, graphql_type, model_fields
from .filters import filter_model

__all__ = ["ROOT_QUERY", "ReadContext", "create_model_schema", "model_object_type"]

ROOT_QUERY = "all_models"


class ReadContext:
    """The context of a read from the bus: the row rule (``where``) it carries, if any."""

    def __init__(self, where=None):
        self.where = where


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
        # a read from the bus may carry the caller's row rule (ModelService.read): paging counts visible rows only
        return filter_model(model, args, where=getattr(info.context, "where", None))

    arguments = filter_arguments([(f.name, graphql_type(f)) for f in model_fields(model)], scalar)
    query = type("Query", (graphene.ObjectType,), {
        ROOT_QUERY: graphene.Field(
            graphene.List(object_type), args=arguments, resolver=resolve_all_models),
    })
    return graphene.Schema(query=query, auto_camelcase=False)

