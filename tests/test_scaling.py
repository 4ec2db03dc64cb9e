"""Two workers of one service compete on its queue: every action is applied once."""
import re

import pytest

from nautilus_core.actions import ANNOUNCE

from .conftest import RECIPES

pytestmark = pytest.mark.brokers("rabbitmq", "redis")


def test_two_workers_never_apply_one_action_twice(cloud, bus, recorder):
    announcements = recorder(ANNOUNCE)
    workers = cloud.start(RECIPES, workers=2)
    # each worker announced itself when it started
    announcements.wait_for(lambda e: len([a for a in announcements.envelopes if a["sender"] == "recipe"]) >= 2)

    sent = 400
    for n in range(sent):
        bus.publish("create.recipe.pending", {"name": f"scaled-{n}"})
    reply = None
    for _ in range(100):
        reply = bus.ask("read.recipe.pending", {"query": "{ all_models { name } }"}, timeout=10)
        if len(reply.payload["data"]["all_models"]) >= sent:
            break
    names = [row["name"] for row in reply.payload["data"]["all_models"]]
    assert sorted(names) == sorted(f"scaled-{n}" for n in range(sent))  # each once: no duplicates, none lost

    handled = [len(re.findall(r"action recipe create\.recipe\.pending success", w.log())) for w in workers]
    assert all(count > 0 for count in handled), handled  # both consumed: they really competed
