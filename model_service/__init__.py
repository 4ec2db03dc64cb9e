"""model_service: a service that owns one Django model (CRUD actions, schema, filters, admin)."""
