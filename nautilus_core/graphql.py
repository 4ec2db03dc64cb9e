"""Running GraphQL documents: refused early when over the limits, parsed and validated once per query text.

Askers (the gateway, clients) send a few query shapes again and again with new variables;
parsing and validating each time was the larger part of a read, so a valid document is
kept, per schema, in a cache bounded by (estimated) bytes. A document that does not parse,
validate or stay within the limits (``nautilus_core.limits``) is never kept: it is answered
with a ``Refused`` result, as are variables that do not fit the operation, before any
resolver runs. ``execute_query_async`` parses and validates a large document in a thread,
so the event loop goes on serving other requests meanwhile.
"""
import asyncio
import inspect
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from graphql import (DocumentNode, ExecutionContext, ExecutionResult, GraphQLError, execute, parse, specified_rules,
                     validate)
from graphql.validation import MaxIntrospectionDepthRule, NoSchemaIntrospectionCustomRule

from .limits import Limits, limits_errors, limits_rule
from .metrics import document_cache_lookup
from .observe import service_name

__all__ = ["Refused", "check_document", "execute_query", "execute_query_async", "DocumentCache"]

#: documents longer than this (characters) are parsed and validated off the event loop
THREAD_THRESHOLD = 2000
#: at most this many errors are reported for one document (the rest is noise to a client)
MAX_ERRORS = 20


class Refused(ExecutionResult):
    """A request refused before execution: its document does not parse, validate or fit the
    limits, or its variables or operation name do not fit the document. It has no ``data``
    (GraphQL over HTTP: 400 under ``application/graphql-response+json``)."""


class DocumentCache:
    """Valid parsed documents (any value) by query text, the least recently used dropped first to stay within ``budget``
    bytes (estimated from the text's length: a parsed document with locations takes about 110 bytes per
    character, measured on graphql-core 3.2)."""

    BYTES_PER_CHARACTER = 110

    def __init__(self, budget):
        self.budget = budget
        self.size = 0
        self._documents = OrderedDict()
        self._lock = threading.Lock()  # parsed in threads: several may put at once

    def get(self, query):
        with self._lock:
            entry = self._documents.get(query)
            if entry is not None:
                self._documents.move_to_end(query)
            return entry

    def put(self, query, entry):
        cost = len(query) * self.BYTES_PER_CHARACTER
        if cost > self.budget:
            return
        with self._lock:
            if self._documents.pop(query, None) is not None:
                self.size -= cost
            self._documents[query] = entry
            self.size += cost
            while self.size > self.budget:
                dropped, _ = self._documents.popitem(last=False)
                self.size -= len(dropped) * self.BYTES_PER_CHARACTER

    def __len__(self):
        return len(self._documents)


_caches = weakref.WeakKeyDictionary()  # graphql-core schema → its DocumentCache (gone with the schema)
_caches_lock = threading.Lock()


def document_cache(graphql_schema):
    from .conf import nautilus_settings

    with _caches_lock:
        cache = _caches.get(graphql_schema)
        if cache is None:
            cache = _caches[graphql_schema] = DocumentCache(nautilus_settings.DOCUMENT_CACHE_SIZE)
        return cache


def _refusal(message, code, **extensions):
    return Refused(data=None, errors=[GraphQLError(message, extensions={"code": code, **extensions})])


def _checked(graphql_schema, query, variables, limits):
    """``(document, None)`` for a document that may run, else ``(None, Refused)``."""
    if not isinstance(query, str):
        return None, _refusal("The query must be a string.", "invalid_request")
    if variables is not None and not isinstance(variables, dict):
        return None, _refusal("The variables must be a JSON object.", "invalid_request")
    if len(query) > limits.max_document_size:
        return None, _refusal(f"The query document has {len(query)} characters; at most {limits.max_document_size}.",
                              "document_too_large", limit=limits.max_document_size, found=len(query))
    cache = document_cache(graphql_schema)
    cached = cache.get(query)
    document_cache_lookup(service_name(), cached is not None and cached.limits == limits)
    if cached is not None and cached.limits == limits:  # valid, within the limits unless its first is a variable
        errors = limits_errors(graphql_schema, cached.document, limits, variables) if cached.uses_variables else []
        return (None, Refused(data=None, errors=errors)) if errors else (cached.document, None)
    document = cached.document if cached is not None else None
    if document is None:
        try:
            document = parse(query)
        except GraphQLError as error:
            return None, Refused(data=None, errors=[error])
    measured = limits_rule(limits, variables)
    rules = [measured, MaxIntrospectionDepthRule] + ([] if limits.introspection else [NoSchemaIntrospectionCustomRule])
    # the limits first: they are linear in the document's size, some of the spec's rules are not
    errors = validate(graphql_schema, document, rules, max_errors=MAX_ERRORS) or validate(
        graphql_schema, document, specified_rules, max_errors=MAX_ERRORS)
    if errors:
        return None, Refused(data=None, errors=errors)
    cache.put(query, _Cached(document, limits, measured.used_variables))
    return document, None


@dataclass(frozen=True)
class _Cached:
    document: DocumentNode
    limits: Limits  # those it was checked under (the settings may change)
    uses_variables: bool  # its first/last are variables: measured again on every request


class _NotExecutable(Exception):
    def __init__(self, errors):
        self.errors = errors


class _ExecutionContext(ExecutionContext):
    """Raises, rather than answering like a failed execution, when the variables or the
    operation name do not fit the document: the request is refused (a 400, not a 200)."""

    @classmethod
    def build(cls, *args, **kwargs):
        built = super().build(*args, **kwargs)
        if isinstance(built, list):
            raise _NotExecutable(built)
        return built


def _run(schema, document, variables, operation_name, context):
    try:
        return execute(schema.graphql_schema, document, variable_values=variables, operation_name=operation_name,
                       context_value=context, execution_context_class=_ExecutionContext)
    except _NotExecutable as exc:
        return Refused(data=None, errors=exc.errors)


def check_document(graphql_schema, query, variables=None, limits=None):
    """``(document, None)`` for a document that parses, validates and fits the limits, else ``(None, Refused)``
    (for runners other than ``execute``: the gateway's subscriptions)."""
    return _checked(graphql_schema, query, variables, limits or Limits.from_settings())


def execute_query(schema, query, variables=None, operation_name=None, context=None, limits=None):
    """Execute against a graphene Schema whose resolvers are synchronous."""
    document, refused = _checked(schema.graphql_schema, query, variables, limits or Limits.from_settings())
    return refused or _run(schema, document, variables, operation_name, context)


_one_thread_per_loop = weakref.WeakKeyDictionary()  # event loop → Semaphore(1)


def _parsing_thread():
    """One large document at a time is parsed off each event loop: a thread holds the GIL for up to 5 ms at
    a time, so several would starve the loop; one leaves it at least every other turn."""
    loop = asyncio.get_running_loop()
    semaphore = _one_thread_per_loop.get(loop)
    if semaphore is None:
        semaphore = _one_thread_per_loop[loop] = asyncio.Semaphore(1)
    return semaphore


async def execute_query_async(schema, query, variables=None, operation_name=None, context=None, limits=None):
    """Execute against a graphene Schema whose resolvers may be coroutines."""
    limits = limits or Limits.from_settings()
    check = (schema.graphql_schema, query, variables, limits)
    if isinstance(query, str) and len(query) > THREAD_THRESHOLD and document_cache(schema.graphql_schema).get(
            query) is None:
        async with _parsing_thread():
            document, refused = await asyncio.to_thread(_checked, *check)
    else:
        document, refused = _checked(*check)
    if refused:
        return refused
    result = _run(schema, document, variables, operation_name, context)
    return await result if inspect.isawaitable(result) else result
