import nautilus


class RecipeBookAPI(nautilus.APIGateway):
    """The recipe book's public GraphQL endpoint.

    Anyone may read recipes and ingredients and add ingredients; changing recipes and
    their ingredients needs a session (registerUser / loginUser); users read and change
    only their own record.
    """

    public_mutations = frozenset({"createIngredient"})
    owners = {"user": "pk"}

    @nautilus.auth_criteria("user")
    def only_themselves(self, model, user_id):
        return model["pk"] == user_id
