import nautilus
from examples.recipe_book.gateway.services import RecipeBookAPI


class CachedCriteriaAPI(RecipeBookAPI):
    """The recipe book's gateway plus a Python criterion on a service without a read rule: every caller's
    read of ingredients has the same payload (one cache entry), and the criterion is applied per caller."""

    @nautilus.auth_criteria("ingredient")
    def hide_from_strangers(self, model, user_id):
        return not model["name"].startswith("hidden") or user_id is not None
