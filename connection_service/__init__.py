"""ConnectionService: a generated join model between two services, kept consistent by cascade deletes.

Add ``"connection_service"`` and your app to ``INSTALLED_APPS`` and declare the service::

    class Ingredients(nautilus.ConnectionService):
        from_service = ("recipe",)
        to_service = ("ingredient",)
"""
