"""The executor's own price reaches litellm as its per-call custom pricing, over the real HTTP path.

litellm then prices a reply from that price instead of searching its cost map each call, and a
user's litellm callbacks see the cost the executor reports.  Nothing else changes: the request
sent, litellm's process-wide cost map, and callbacks the user registers (they still fire).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from executus_nb import Agent, Executor, RunStatus
from executus_nb.model.backend import litellm
from executus_nb.model.call import pricing_params
from tests.waiting import wait_until

pytest_plugins = ["tests.conftest_server"]

MODEL = "openai/test-model"  # not in litellm's cost map, as a self-hosted model is not
PRICE = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}


@pytest.fixture
def costs() -> Iterator[list[object]]:
    """``response_cost`` of each call, as a litellm success callback the user registered sees it."""
    lm = litellm()

    class Spy(lm.integrations.custom_logger.CustomLogger):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[object] = []

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            if kwargs.get("model") == MODEL.split("/", 1)[1]:  # not the set-up's own sim/ calls
                self.seen.append(kwargs.get("response_cost"))

    spy = Spy()
    lm.callbacks.append(spy)
    try:
        yield spy.seen
    finally:  # out of every list litellm copied it into, so no later test runs with it
        lm.logging_callback_manager.remove_callback_from_all_lists(spy, require_self=False)


def run_once(server, prices=None, stream=False, **model_params):
    server.reply("two words")
    model = {"model": MODEL, "api_base": server.base_url, "api_key": "sk-test", "timeout": 5, **model_params}
    agent = Agent(name="priced", instructions="Answer.", model=model, stream=stream)
    result = Executor(prices=prices).run(agent, "hello").wait(timeout=30, quiet=True)
    assert result.status is RunStatus.SUCCEEDED, result
    return result


@pytest.mark.parametrize("stream", [False, True])
def test_user_callback_sees_the_executor_price(openai_server, costs, stream):
    result = run_once(openai_server, prices={MODEL: PRICE}, stream=stream)

    wait_until(lambda: len(costs) == 1)
    assert result.usage.cost_usd > 0
    assert costs[0] == pytest.approx(result.usage.cost_usd)
    body = openai_server.last_request.json
    assert not {"input_cost_per_token", "output_cost_per_token"} & set(body)  # a price is never sent


def test_without_an_executor_price_litellm_prices_on_its_own(openai_server, costs):
    result = run_once(openai_server)

    wait_until(lambda: len(costs) == 1)
    assert math.isnan(result.usage.cost_usd)  # unknown to both, as before
    assert costs[0] is None  # litellm's own answer for a model its map lacks: nothing was given to it


def test_pricing_in_the_model_params_is_kept_whole(openai_server, costs):
    result = run_once(openai_server, prices={MODEL: PRICE}, input_cost_per_token=1e-3, output_cost_per_token=1e-3)

    wait_until(lambda: len(costs) == 1)
    tokens = result.usage.prompt_tokens + result.usage.completion_tokens
    assert costs[0] == pytest.approx(tokens * 1e-3)  # litellm used the model's own pricing
    assert result.usage.cost_usd == pytest.approx(
        result.usage.prompt_tokens * 1e-6 + result.usage.completion_tokens * 2e-6
    )  # the executor reports from its table, as before


def test_a_priced_call_leaves_litellm_cost_map_alone(openai_server):
    lm = litellm()
    size = len(lm.model_cost)
    run_once(openai_server, prices={MODEL: PRICE})
    assert len(lm.model_cost) == size and MODEL not in lm.model_cost
    other = run_once(openai_server)  # another executor, without the price, does not see it
    assert math.isnan(other.usage.cost_usd)


def test_pricing_params_reads_the_executor_table():
    table = {"test-model": (1e-6, 2e-6)}
    assert pricing_params("openai/test-model", table) == {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    assert pricing_params("openai/other", table) == {}
    assert pricing_params("openai/test-model", None) == {}
