import nautilus


class RecipeBookAPI(nautilus.APIGateway):
    """The recipe book's public GraphQL endpoint.

    Anyone may read public recipes and every ingredient, and add ingredients; a recipe is
    written, changed, deleted and given ingredients by its owner only, and a private one is
    read by its owner only; users read and change only their own record.
    """

    public_mutations = frozenset({"createIngredient"})  # every other mutation needs a session token
    # created for the caller; updated and deleted only by the user in that field ("pk": the row is the user)
    owners = {"recipe": "owner", "user": "pk"}
    # which rows a user may read, applied by the service before it orders and pages
    read_rules = {
        "recipe": {"_or": [{"private": {"_eq": False}}, {"owner": {"_eq": "$user_id"}}]},
        "user": {"pk": {"_eq": "$user_id"}},
    }
    # a recipe's ingredients are linked and unlinked by the owner of the recipe
    connection_owners = {"ingredients": ["recipe"]}

    def user_session(self, user):  # what goes into the token besides the user's id
        return {"id": user["pk"], "email": user["email"]}
