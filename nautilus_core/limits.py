"""What one GraphQL request may cost, checked before anything runs.

A document is measured per operation, with its fragments and inline fragments expanded:

- *depth*: the deepest chain of nested fields (``{ recipe { name } }`` is 2);
- *fields*: how many fields it selects (every alias counts);
- *cost*: how many values the answer may hold: a list field counts its children once per
  row, by its ``first``/``last`` argument when it has one, else by ``QUERY_PAGE_SIZE``;
- *asks*: how many asks over the bus it may cost (fields whose definition carries
  ``extensions["asks"]``, as the gateway's do; a service's own fields cost none).

Introspection (``__schema``, ``__type``) answers from the schema alone: it counts in fields but
not in depth (clients nest ``ofType`` 7 to 10 deep) or cost; graphql-core's
MaxIntrospectionDepthRule (graphql-js's) refuses the nesting (``types { fields { type { fields …``)
that would make it explode.

Each has a setting (``NAUTILUS_MAX_QUERY_DEPTH``…, see ``nautilus_core.conf``); a document
over one is refused with an error whose ``extensions.code`` names it. The measure is a
graphql-core validation rule, so it runs in ``validate`` like the spec's rules, before them
(they are not all linear in the document's size). Fragments are measured once each, so a
document that spreads fragments into each other (a "billion laughs") costs linear time;
a fragment cycle counts once here and is then reported by the spec's NoFragmentCyclesRule.
"""
from dataclasses import dataclass

from graphql import (FieldNode, FragmentSpreadNode, GraphQLError, InlineFragmentNode, ValidationRule, get_named_type,
                     get_nullable_type, is_list_type, type_from_ast)
from graphql.language import FragmentDefinitionNode, IntValueNode, OperationDefinitionNode, VariableNode
from graphql.type import SchemaMetaFieldDef, TypeMetaFieldDef
from graphql.utilities import value_from_ast_untyped
from graphql.utilities.type_info import get_field_def

from .conf import nautilus_settings

__all__ = ["Limits", "Measure", "limits_rule", "limits_errors", "ASKS"]

#: the key of a field definition's ``extensions`` that says how many asks resolving it costs
ASKS = "asks"


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_fields: int
    max_cost: int
    max_asks: int
    page_size: int
    max_document_size: int
    introspection: bool

    @classmethod
    def from_settings(cls):
        s = nautilus_settings
        return cls(max_depth=s.MAX_QUERY_DEPTH, max_fields=s.MAX_QUERY_FIELDS, max_cost=s.MAX_QUERY_COST,
                   max_asks=s.MAX_ASKS, page_size=s.QUERY_PAGE_SIZE, max_document_size=s.MAX_DOCUMENT_SIZE,
                   introspection=s.INTROSPECTION)

    def refusals(self, measure):
        """``[(code, message, extensions)]`` for each limit the measure is over."""
        checks = [("query_too_deep", "nested {found} fields deep; at most {limit}", measure.depth, self.max_depth),
                  ("too_many_fields", "selects {found} fields; at most {limit}", measure.fields, self.max_fields),
                  ("query_too_complex", "may return about {found} values; at most {limit}", measure.cost,
                   self.max_cost),
                  ("too_many_asks", "would ask services {found} times; at most {limit}", measure.asks,
                   self.max_asks)]
        return [(code, f"The query {text.format(found=found, limit=limit)}.", {"code": code, "limit": limit,
                                                                                 "found": found})
                for code, text, found, limit in checks if found > limit]


@dataclass(slots=True)  # not frozen: built once per field measured, and frozen dataclasses are slow to build
class Measure:
    depth: int = 0
    fields: int = 0
    cost: int = 0
    asks: int = 0

    def __add__(self, other):
        return Measure(max(self.depth, other.depth), self.fields + other.fields, self.cost + other.cost,
                       self.asks + other.asks)


def limits_rule(limits, variables=None):
    """A ValidationRule refusing every operation over ``limits``; ``variables`` give ``first: $n`` its value.

    The class's ``used_variables`` says afterwards whether the verdict depended on them.
    """
    variables = variables or {}

    class QueryLimitsRule(ValidationRule):
        used_variables = False

        def enter_operation_definition(self, node, *_):
            self.fragments = {}  # name → Measure, or None while it is being measured (a cycle)
            self.variables = {d.variable.name.value: value_from_ast_untyped(d.default_value)
                              for d in node.variable_definitions or () if d.default_value is not None}
            self.variables.update(variables)
            root = self.context.schema.get_root_type(node.operation)
            try:
                measure = self.selections(root, node.selection_set)
            except RecursionError:  # fragments spread in a chain longer than Python's stack
                measure = Measure(depth=limits.max_depth + 1)
            for code, message, extensions in limits.refusals(measure):
                self.report_error(GraphQLError(message, node, extensions=extensions))
            return self.SKIP

        def selections(self, parent_type, selection_set):
            total = Measure()
            for selection in selection_set.selections if selection_set else ():
                if isinstance(selection, FieldNode):
                    total += self.field(parent_type, selection)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    type_ = type_from_ast(self.context.schema, condition) if condition else parent_type
                    total += self.selections(type_ or parent_type, selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    total += self.spread(selection.name.value)
            return total

        def spread(self, name):
            if name in self.fragments:
                return self.fragments[name] or Measure()
            fragment = self.context.get_fragment(name)
            if fragment is None:
                return Measure()  # KnownFragmentNamesRule reports it
            self.fragments[name] = None
            type_ = type_from_ast(self.context.schema, fragment.type_condition)
            self.fragments[name] = measure = self.selections(type_, fragment.selection_set)
            return measure

        def field(self, parent_type, node):
            definition = get_field_def(self.context.schema, parent_type, node) if parent_type else None
            if definition is None:
                return Measure(depth=1, fields=1, cost=1)  # FieldsOnCorrectTypeRule reports it
            children = self.selections(get_named_type(definition.type), node.selection_set)
            if definition in (SchemaMetaFieldDef, TypeMetaFieldDef):  # its answer is bounded by the schema's size
                return Measure(depth=1, fields=1 + children.fields, cost=1)
            rows = self.rows(node) if is_list_type(get_nullable_type(definition.type)) else 1
            return Measure(depth=1 + children.depth, fields=1 + children.fields, cost=1 + rows * children.cost,
                           asks=(definition.extensions or {}).get(ASKS, 0) + children.asks)

        def rows(self, node):
            """The rows a list field may hold: its ``first``/``last``, else the page size."""
            for argument in node.arguments or ():
                if argument.name.value in ("first", "last"):
                    value = argument.value
                    if isinstance(value, VariableNode):
                        type(self).used_variables = True
                        value = self.variables.get(value.name.value)
                    elif isinstance(value, IntValueNode):
                        value = int(value.value)
                    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                        return value
            return limits.page_size

    return QueryLimitsRule


class _MeasureContext:
    """What the rule uses of a ValidationContext (whose TypeInfo costs more to build than the measure)."""

    def __init__(self, schema, document, report_error):
        self.schema = schema
        self.report_error = report_error
        self._fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def get_fragment(self, name):
        return self._fragments.get(name)


def limits_errors(schema, document, limits, variables=None):
    """The rule's errors for a document already validated, with these variables: the measure alone,
    without a visit of the whole document by ``validate`` (for a cached document whose ``first`` is a
    variable, checked again on every request)."""
    errors = []
    rule = limits_rule(limits, variables)(_MeasureContext(schema, document, errors.append))
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            rule.enter_operation_definition(definition)
    return errors
