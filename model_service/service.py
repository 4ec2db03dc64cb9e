"""ModelService: the service that owns one Django model.

It answers ``create|read|update|delete.<name>.pending`` with ``.success`` / ``.error``,
serves ``all_models`` with the model's filters on ``/graphql``, and announces its fields
and CRUD mutations::

    class RecipeService(nautilus.ModelService):
        model = Recipe
"""
from django.core import checks
from django.core.exceptions import ValidationError

from nautilus_core.actions import crud_action
from nautilus_core.graphql import execute_query
from nautilus_core.service import ActionError, Service, ServiceMisconfigured, normalize_name, on_action

from .fields import (UnsupportedField, always_set, field_description, field_lookup, graphql_type, model_description,
                     model_fields, parse_input, deleted_record, record_of, required_fields)
from .schema import ReadContext, create_model_schema

__all__ = ["ModelService", "field_summaries"]


def field_summaries(model):
    """``[{"name", "type", "required", "description"}]``: ``required`` when every row has a value."""
    return [{"name": f.name, "type": graphql_type(f), "required": always_set(f), "description": field_description(f)}
            for f in model_fields(model)]


class ModelService(Service):
    """Owns the rows of ``model``; its name defaults to the model's (``Recipe`` → ``recipe``)."""

    model = None

    def __init__(self, model=None, **kwargs):
        self.model = model or type(self).model
        if self.model is None:
            raise ServiceMisconfigured(
                f"{type(self).__name__} has no model: set `model = <a Django model>` on the class.",
                check_id="nautilus.E010",
            )
        kwargs.setdefault("name", type(self).name or normalize_name(self.model.__name__))
        kwargs.setdefault("schema", create_model_schema(
            self.model, model_description(self.model, type(self), kwargs["name"])))
        super().__init__(**kwargs)

    def get_models(self):
        return [self.model]

    def get_handlers(self):
        # The CRUD action types depend on the service's name, so they are mapped here.
        handlers = super().get_handlers()
        for method in ("create", "read", "update", "delete"):
            handlers[crud_action(method, self.name)] = getattr(self, method)
        return handlers

    def check(self):
        errors = []
        for field in model_fields(self.model):
            try:
                graphql_type(field)
            except UnsupportedField as exc:
                errors.append(checks.Error(str(exc), hint="Use a supported field type, or leave it out of the model.",
                                           obj=self.model, id="nautilus.E011"))
        return errors

    # -- the summary -----------------------------------------------------------------

    def summarize(self, **extra):
        # read_rules: its reads apply a "where" row rule (model_service.filters), so a gateway may send one
        return super().summarize(pk=self.model._meta.pk.name, fields=field_summaries(self.model),
                                 mutations=self.mutation_summaries(), read_rules=True,
                                 description=model_description(self.model, type(self), self.name), **extra)

    def mutation_summaries(self):
        pk = self.model._meta.pk
        required = {f.name for f in required_fields(self.model)}
        writable = [f for f in model_fields(self.model) if f.editable and not (f.primary_key and f.auto_created)]
        record = [{"name": self.name, "type": {"fields": field_summaries(self.model)}, "required": False,
                   "description": f"The {self.name} as it is now."}]
        suffix = self.name[:1].upper() + self.name[1:]

        def io(name, type_, required, description):
            return {"name": name, "type": type_, "required": required, "description": description}

        def field_io(field, required):
            return io(field.name, graphql_type(field), required, field_description(field))

        the_id = io("id", "ID", True, f"The id of the {self.name}.")

        def mutation(method, inputs, outputs):
            event = crud_action(method, self.name)
            return {"name": f"{method}{suffix}", "event": event, "isAsync": False, "inputs": inputs,
                    "outputs": outputs,
                    "description": f"{method.capitalize()}s a row of the {self.name} service ({event})."}

        return [
            mutation("create", [field_io(f, f.name in required) for f in writable], record),
            mutation("update", [the_id] + [field_io(f, False) for f in writable if f is not pk], record),
            mutation("delete", [the_id], [io("id", "ID", True, f"The id of the deleted {self.name}.")]),
        ]

    # -- CRUD handlers ---------------------------------------------------------------

    @on_action()
    def create(self, action):
        values, errors = parse_input(self.model, action.payload, required=True)
        row = self.model(**values)
        self._save(row, errors)
        return record_of(row)

    @on_action(record=False)
    def read(self, action):
        query, variables = action.payload.get("query"), action.payload.get("variables") or {}
        where = action.payload.get("where")
        if not isinstance(query, str) or not isinstance(variables, dict) or not isinstance(where, (dict, type(None))):
            raise ActionError('A read needs {"query": "<GraphQL>", "variables": {…}} (and maybe "where": {…}).',
                              "invalid_query")
        result = execute_query(self.schema, query, variables, context=ReadContext(where))
        errors = [error.formatted for error in result.errors or ()]
        if result.data is None:
            raise ActionError(errors[0]["message"] if errors else "The query failed.", "invalid_query",
                              {"errors": errors})
        return {"data": result.data, "errors": errors}

    @on_action()
    def update(self, action):
        payload = dict(action.payload)
        row = self._row(payload, for_update=True)
        values, errors = parse_input(self.model, payload, required=False)
        for attname, value in values.items():
            setattr(row, attname, value)
        self._save(row, errors)
        return record_of(row)

    @on_action()
    def delete(self, action):
        payload = dict(action.payload)
        row = self._row(payload, for_update=True)
        extra = set(payload) - {self.model._meta.pk.name}
        if extra:
            raise ActionError(f"A delete takes only the id; unexpected: {', '.join(sorted(extra))}.", "invalid")
        record = deleted_record(row)  # the row as it was, for listeners to judge who could read it
        row.delete()
        return record

    def _row(self, payload, for_update=False):
        """Pop the row's id from the payload (``id``, ``pk`` or the pk's name) and load it."""
        pk_field = self.model._meta.pk
        given = [payload.pop(k) for k in {"id", "pk", pk_field.name, pk_field.attname} if k in payload]
        if not given:
            raise ActionError(f"The payload must name the {self.name} by its id.", "invalid",
                              {"fields": {"id": ["This field is required."]}})
        pk = given[0]
        rows = self.model._default_manager.select_for_update() if for_update else self.model._default_manager
        try:
            return rows.get(pk=pk_field.to_python(pk))
        except (self.model.DoesNotExist, ValidationError, ValueError, TypeError):
            raise ActionError(f"There is no {self.name} with id {pk!r}.", "not_found", {"id": pk}) from None

    def _save(self, row, errors):
        """Validate the whole row (Django's model validation) and save it, or report every error at once."""
        try:
            row.full_clean(exclude=[name for name in errors if name in field_lookup(self.model)])
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.setdefault(name, []).extend(m for m in messages if m not in errors.get(name, []))
        if errors:
            listing = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in sorted(errors.items()))
            raise ActionError(f"Invalid {self.name}: {listing}", "invalid", {"fields": errors})
        row.save()
