import time

from examples.recipe_book.recipes.services import RecipeService

#: seconds between the answer to the asker and the outcome for everyone (a busy broker, a slow network)
DELAY = 0.4


class SlowOutcomeRecipes(RecipeService):
    """The recipe service, publishing each change's outcome ``DELAY`` seconds after it answered the asker: the
    moment in which a gateway process that did not make the change has not heard of it from the bus."""

    def _deliver(self, outcome, outbox, reply_to):
        if reply_to and outcome is not None and outcome.correlation_id:
            self.bus.reply(reply_to, outcome)
            if outbox:
                time.sleep(DELAY)
        super()._deliver(outcome, outbox, None)
