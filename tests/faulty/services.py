"""A model service whose extra handlers fail on purpose, for tests/test_delivery.py."""
import collections
import os

from examples.recipe_book.recipes.models import Recipe
from model_service.service import ModelService
from nautilus_core.service import ActionError, on_action

# attempts per action id, in this worker process
_attempts = collections.Counter()


class Faulty(ModelService):
    """Answers ``create|read|update|delete.faulty.pending`` on the Recipe model, and:

    - ``explode.faulty.pending``: fails every time (a poison message);
    - ``flaky.faulty.pending``: fails twice, then creates a recipe;
    - ``note.faulty.pending``: creates a recipe and emits ``noted.faulty.success`` ``count`` times;
    - ``clash.faulty.pending``: writes a row the database refuses (an integrity error of its own);
    - ``crash.faulty.pending``: kills its worker (a message no worker survives);
    - ``refuse.faulty.pending``: creates a recipe, then refuses the action (``ActionError``: undone).
    """

    name = "faulty"
    model = Recipe

    @on_action("explode.faulty.pending")
    def explode(self, action):
        Recipe.objects.create(name="never kept")
        raise RuntimeError("boom")

    @on_action("flaky.faulty.pending")
    def flaky(self, action):
        _attempts[action.action_id] += 1
        if _attempts[action.action_id] < 3:
            raise ConnectionError(f"flaky attempt {_attempts[action.action_id]}")
        return {"id": Recipe.objects.create(name=action.payload["name"]).pk}

    @on_action("note.faulty.pending")
    def note(self, action):
        row = Recipe.objects.create(name=action.payload["name"])
        for n in range(action.payload.get("count", 1)):
            self.emit("noted.faulty.success", {"recipe": row.pk, "n": n})
        return {"id": row.pk}

    @on_action("clash.faulty.pending")
    def clash(self, action):
        return {"id": Recipe.objects.create(name=None).pk}  # NOT NULL

    @on_action("crash.faulty.pending")
    def crash(self, action):
        os._exit(70)

    @on_action("refuse.faulty.pending")
    def refuse(self, action):
        Recipe.objects.create(name=action.payload["name"])
        raise ActionError("refused on purpose", "refused")
