"""gateway: one GraphQL endpoint for a whole cloud, built from the services' announcements."""
