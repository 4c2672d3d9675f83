"""Prices belong to the executor that was given them; litellm's process-wide cost map is never written."""

from __future__ import annotations

import itertools
import math

import pytest

from executus_nb import Agent, ConfigError, Executor, sim
from executus_nb.model.backend import litellm
from executus_nb.model.cost import cost_usd, price_table
from tests.openai_server import OpenAIServer

MODEL = "openai/executus-price-leak-model"  # in no price list
PRICE_A = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
PRICE_B = {"input_cost_per_token": 3e-3, "output_cost_per_token": 5e-3}


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(default="a priced answer") as srv:
        yield srv


@pytest.fixture
def no_global_registration(monkeypatch):
    """Fail the test if anything writes litellm's process-wide cost map."""
    lm = litellm()

    def refuse(*args, **kwargs):
        raise AssertionError("litellm.register_model was called: prices leaked into the process-wide map")

    monkeypatch.setattr(lm, "register_model", refuse)
    before = dict(lm.model_cost)
    yield
    assert lm.model_cost == before


def usage_of(executor: Executor, server: OpenAIServer):
    agent = Agent(name="priced", model={"model": MODEL, "api_base": server.base_url, "api_key": "sk-price-test"})
    result = executor.run(agent, "price me").wait(timeout=60, quiet=True)
    assert result.ok, result.error
    return result.usage


def expected(usage, price) -> float:
    return (
        usage.prompt_tokens * price["input_cost_per_token"] + usage.completion_tokens * price["output_cost_per_token"]
    )


@pytest.mark.parametrize("order", list(itertools.permutations("AB-")), ids="".join)
def test_executors_keep_their_own_prices_in_any_order(server, no_global_registration, order):
    executors = {"A": Executor(prices={MODEL: PRICE_A}), "B": Executor(prices={MODEL: PRICE_B}), "-": Executor()}
    costs = {}
    for name in order:
        usage = usage_of(executors[name], server)
        costs[name] = (usage, usage.cost_usd)
    usage_a, cost_a = costs["A"]
    usage_b, cost_b = costs["B"]
    assert cost_a == pytest.approx(expected(usage_a, PRICE_A))
    assert cost_b == pytest.approx(expected(usage_b, PRICE_B))
    assert math.isnan(costs["-"][1])  # no price given, none in litellm's map: unknown, not someone else's
    # Each executor's frames agree with its own table, whatever ran since.
    assert executors["A"].usage_df().cost_usd.iloc[0] == pytest.approx(cost_a)
    assert executors["B"].runs_df().cost_usd.iloc[0] == pytest.approx(cost_b)
    assert math.isnan(executors["-"].steps_df().cost_usd.iloc[0])


def test_a_priced_sim_model_is_priced_only_where_the_price_was_given(no_global_registration):
    model = sim.scripted([sim.reply("priced sim answer")], name="price-scope")
    priced = Executor(prices={model: PRICE_B}).run(Agent(model=model), "hello").wait(timeout=60, quiet=True)
    free = Executor().run(Agent(model=model), "hello").wait(timeout=60, quiet=True)
    assert priced.usage.cost_usd == pytest.approx(expected(priced.usage, PRICE_B)) and priced.usage.cost_usd > 0
    assert free.usage.cost_usd == 0.0  # unpriced sim models are free, not the other executor's price


def test_cost_comes_from_the_given_table_then_litellms_map_then_nan():
    table = price_table({"gpt-4o-mini": PRICE_B, MODEL: PRICE_A})
    assert cost_usd("gpt-4o-mini", 1000, 10, table) == pytest.approx(1000 * 3e-3 + 10 * 5e-3)  # the table wins
    assert 0 < cost_usd("gpt-4o-mini", 1000, 10) < cost_usd("gpt-4o-mini", 1000, 10, table)  # litellm's map
    assert cost_usd(MODEL, 100, 10, table) == pytest.approx(100 * 1e-6 + 10 * 2e-6)
    assert math.isnan(cost_usd(MODEL, 100, 10))
    bare = price_table({"executus-bare-name": PRICE_A})  # a bare name prices it under any provider
    assert cost_usd("openai/executus-bare-name", 100, 10, bare) == pytest.approx(100 * 1e-6 + 10 * 2e-6)


@pytest.mark.parametrize(
    "price, problem",
    [
        ({"input_cost_per_token": 1e-6}, "lacks"),
        ({"input_cost_per_token": "cheap", "output_cost_per_token": 1e-6}, "finite number"),
        ({"input_cost_per_token": -1e-6, "output_cost_per_token": 1e-6}, "finite number"),
        ({"input_cost_per_token": float("nan"), "output_cost_per_token": 1e-6}, "finite number"),
        ({"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "input_cost_per_tokn": 1}, "unknown keys"),
        (0.001, "must be a dict"),
    ],
)
def test_a_bad_price_is_a_config_error_naming_the_model(price, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        Executor(prices={"openai/some-model": price})
    assert "openai/some-model" in str(info.value)
