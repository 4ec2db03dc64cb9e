"""A ModelService's own GraphQL schema: ``all_models(<filters>) { <fields> pk }``.

Fields every row has a value for are non-null; every type, field and argument has a
description (the model's docstring, each field's ``help_text`` or ``verbose_name``).
"""
import graphene

from nautilus_core.filters import filter_arguments
from nautilus_core.types import object_type, scalar

from .fields import always_set, field_description, field_value, graphql_type, model_fields
from .filters import filter_model

__all__ = ["ROOT_QUERY", "ReadContext", "create_model_schema", "model_object_type"]

ROOT_QUERY = "all_models"


class ReadContext:
    """The context of a read from the bus: the row rule (``where``) it carries, if any."""

    def __init__(self, where=None):
        self.where = where


def _resolver(field):
    return lambda row, info: field_value(field, row)


def model_object_type(model, description=None):
    """A graphene ObjectType with one scalar per field (foreign keys as ids) and ``pk``."""
    attrs = {"pk": graphene.ID(required=True, resolver=lambda row, info: row.pk,
                               description="The primary key of this row."),
             }
    for field in model_fields(model):
        type_ = scalar(graphql_type(field))
        attrs[field.name] = graphene.Field(graphene.NonNull(type_) if always_set(field) else type_,
                                           resolver=_resolver(field), description=field_description(field))
    return object_type(model.__name__, description or f"A {model._meta.verbose_name}.", attrs)


def create_model_schema(model, description=None):
    row_type = model_object_type(model, description)

    def resolve_all_models(root, info, **args):
        # a read from the bus may carry the caller's row rule (ModelService.read): paging counts visible rows only
        return filter_model(model, args, where=getattr(info.context, "where", None))

    arguments = filter_arguments([(f.name, graphql_type(f)) for f in model_fields(model)], scalar)
    query = object_type("Query", f"Reading the {model._meta.verbose_name_plural}.", {
        ROOT_QUERY: graphene.Field(
            graphene.NonNull(graphene.List(graphene.NonNull(row_type))), args=arguments,
            resolver=resolve_all_models,
            description=f"The {model._meta.verbose_name_plural} matching every filter given, in order."),
    })
    return graphene.Schema(query=query, auto_camelcase=False)
