import nautilus


class Ingredients(nautilus.ConnectionService):
    """Which ingredients go into which recipe: ``recipe`` ↔ ``ingredient``, as the service ``ingredients``."""

    from_service = ("recipe",)
    to_service = ("ingredient",)
