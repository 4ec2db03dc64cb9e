"""Running GraphQL documents with their parse and validation done once per query text.

Askers (the gateway, clients) send a few query shapes again and again with new
variables; parsing and validating each time was the larger part of a read.
"""
import functools
import inspect

from graphql import ExecutionResult, GraphQLError, execute, parse, validate

__all__ = ["execute_query", "execute_query_async"]


@functools.lru_cache(maxsize=1024)
def _document(schema, query):
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, [error]
    return document, validate(schema.graphql_schema, document)


def _run(schema, query, variables, operation_name, context):
    document, errors = _document(schema, query)
    if errors:
        return ExecutionResult(data=None, errors=errors)
    return execute(schema.graphql_schema, document, variable_values=variables, operation_name=operation_name,
                   context_value=context)


def execute_query(schema, query, variables=None, operation_name=None, context=None):
    """Execute against a graphene Schema whose resolvers are synchronous."""
    return _run(schema, query, variables, operation_name, context)


async def execute_query_async(schema, query, variables=None, operation_name=None, context=None):
    """Execute against a graphene Schema whose resolvers may be coroutines."""
    result = _run(schema, query, variables, operation_name, context)
    return await result if inspect.isawaitable(result) else result
