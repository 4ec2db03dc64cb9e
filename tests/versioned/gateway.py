import nautilus


class VersionedAPI(nautilus.APIGateway):
    """The gateway of tests/test_versions.py: recipe mutations need no session."""

    public_mutations = frozenset({"createRecipe", "updateRecipe", "deleteRecipe"})
