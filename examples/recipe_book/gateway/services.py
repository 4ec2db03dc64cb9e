import nautilus


class RecipeBookAPI(nautilus.APIGateway):
    """The recipe book's public GraphQL endpoint."""
