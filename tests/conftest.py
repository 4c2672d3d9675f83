import os

# Before anything can import litellm: no price-list download, no network at import.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import pytest  # noqa: E402

from executus_nb import Agent, Executor, sim  # noqa: E402


@pytest.fixture
def executor() -> Executor:
    """A fresh executor with no configuration (offline ``sim/`` default)."""
    return Executor()


@pytest.fixture(scope="session")
def warm() -> None:
    """Pay the one-off costs (litellm import, tokenizer load) before timing-sensitive tests."""
    Executor().run(Agent(model=sim.scripted([sim.reply("warm")])), "warm up").wait(timeout=120)
