import asyncio

import nautilus
from examples.recipe_book.gateway.services import RecipeBookAPI


class CriteriaAPI(RecipeBookAPI):
    """The recipe book's gateway plus an awaitable criterion: secret recipes are for their cooks only."""

    @nautilus.auth_criteria("recipe")
    async def hide_secrets(self, model, user_id):
        await asyncio.sleep(0)  # e.g. an ask to another service
        return not model["name"].startswith("secret") or user_id is not None
