"""Structured output, the response cache and streamed text in the view."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from executus_nb import Agent, Executor, OutputValidationError, RunStatus, sim
from executus_nb.model.backend import litellm
from executus_nb.model.cache import ResponseCache
from executus_nb.nb.summary import summarize

pytest_plugins = ["tests.conftest_server"]


class City(BaseModel):
    name: str
    population: int


def test_invalid_twice_then_valid_is_retried_with_the_errors():
    seen = []

    def fn(messages, tools):
        seen.append(messages[-1]["content"])
        answers = [
            "about half a million",
            '{"name": "Lisbon", "population": "many"}',
            '```json\n{"name": "Lisbon", "population": 545000}\n```',
        ]
        return sim.reply(answers[sum(m["role"] == "assistant" for m in messages)])

    ex = Executor()
    city = ex.generate(City, "Largest city of Portugal?", model=sim.function(fn))
    assert city == City(name="Lisbon", population=545000)
    assert "JSON schema" in ex.runs[-1].events[0].messages[0]["content"]
    assert seen[1].startswith("Your answer did not validate: ") and "Invalid JSON" in seen[1]
    assert "population: Input should be a valid integer" in seen[2]
    rejected = [e for e in ex.runs[-1].events if e.kind == "output_rejected"]
    assert [r.raw for r in rejected] == ["about half a million", '{"name": "Lisbon", "population": "many"}']


def test_final_failure_raises_with_raw_text_and_errors():
    model = sim.scripted([sim.reply('{"name": "Oslo"}')] * 3)
    with pytest.raises(OutputValidationError) as info:
        Executor().generate(City, "?", model=model, attempts=3)
    err = info.value
    assert err.raw_text == '{"name": "Oslo"}' and "population: Field required" in err.errors
    assert "after 3 attempts" in str(err)


def test_agent_output_type_gives_an_instance_in_the_result():
    agent = Agent(
        name="geo", output_type=City, model=sim.scripted([sim.reply('{"name": "Porto", "population": 231000}')])
    )
    result = Executor().run(agent, "?").wait(quiet=True)
    assert result.status is RunStatus.SUCCEEDED and result.output == City(name="Porto", population=231000)


def test_json_schema_mode_is_used_where_litellm_says_it_is_supported(openai_server):
    litellm().register_model(
        {
            "openai/schema-model": {
                "litellm_provider": "openai",
                "mode": "chat",
                "supports_response_schema": True,
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
                "cache_read_input_token_cost": 0.0,
                "cache_creation_input_token_cost": 0.0,
            }
        }
    )
    openai_server.reply('{"name": "Faro", "population": 65000}')
    openai_server.reply('{"name": "Faro", "population": 65000}')
    ex = Executor()
    for name in ("openai/schema-model", "openai/test-model"):
        city = ex.generate(City, "?", model={"model": name, "api_base": openai_server.base_url, "api_key": "sk-x"})
        assert city.name == "Faro"
    with_schema, without = openai_server.requests
    assert with_schema["response_format"]["type"] == "json_schema"
    assert with_schema["response_format"]["json_schema"]["schema"]["required"] == ["name", "population"]
    assert "response_format" not in without.json


def test_generate_surfaces_provider_errors_as_model_call_errors():
    def boom(messages, tools):
        raise RuntimeError("quota")

    from executus_nb import ModelCallError

    with pytest.raises(ModelCallError, match="quota"):
        Executor().generate(City, "?", model=sim.function(boom))


# -- response cache ----------------------------------------------------------------------


def test_second_identical_call_is_a_cache_hit_on_disk(tmp_path, openai_server):
    path = tmp_path / "cache.sqlite"
    prices = {"openai/test-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}}
    agent = Agent(name="c", model={"model": "openai/test-model", "api_base": openai_server.base_url, "api_key": "k"})
    first = Executor(cache=path, prices=prices)
    first.run(agent, "same question").wait(quiet=True)
    second = Executor(cache=path, prices=prices)  # a new executor: the cache survives on disk
    result = second.run(agent, "same question").wait(quiet=True)
    assert openai_server.count == 1
    assert result.output == "ok"
    steps = second.steps_df()
    assert bool(steps.cached.iloc[0]) is True and steps.cost_usd.iloc[0] == 0.0
    assert steps.total_tokens.iloc[0] == first.steps_df().total_tokens.iloc[0] > 0
    assert first.steps_df().cost_usd.iloc[0] > 0
    second.run(agent, "another question").wait(quiet=True)
    assert openai_server.count == 2  # a different prompt is a different key
    assert "(cached)" in "".join(
        s.name + (" (cached)" if s.cached else "") for s in summarize(second.runs[0].events).steps
    )


def test_cache_key_separates_endpoints_and_credentials_but_not_transport_settings():
    cache = ResponseCache(None)
    msgs = [{"role": "user", "content": "hi"}]
    base = cache.key("openai/x", msgs, None, {"temperature": 0.1, "api_key": "sk-1", "api_base": "http://a"})
    assert base != cache.key("openai/x", msgs, None, {"temperature": 0.1, "api_key": "sk-1", "api_base": "http://b"})
    assert base != cache.key("openai/x", msgs, None, {"temperature": 0.1, "api_key": "sk-2", "api_base": "http://a"})
    assert base != cache.key("openai/x", msgs, None, {"temperature": 0.2, "api_key": "sk-1", "api_base": "http://a"})
    assert base != cache.key("openai/y", msgs, None, {"temperature": 0.1, "api_key": "sk-1", "api_base": "http://a"})
    assert base == cache.key(
        "openai/x",
        msgs,
        None,
        {"temperature": 0.1, "api_key": "sk-1", "api_base": "http://a", "timeout": 5.0, "max_retries": 0},
    )


# -- streaming ---------------------------------------------------------------------------


def test_streamed_text_reaches_the_view_while_the_call_is_in_flight(openai_server):
    openai_server.chunk_delay_s = 0.05
    openai_server.reply("one two three four five six")
    agent = Agent(
        name="s", stream=True, model={"model": "openai/test-model", "api_base": openai_server.base_url, "api_key": "k"}
    )

    async def main():
        run = Executor().run(agent, "count")
        partials = []
        while not run.done:
            if run.log.partial:
                partials.append(dict(run.log.partial))
            await asyncio.sleep(0.02)
        return run, partials

    run, partials = asyncio.run(main())
    assert run.result.output == "one two three four five six"
    texts = [p[1] for p in partials if 1 in p]
    final = run.result.output
    assert len(set(texts)) >= 2  # the view saw the text grow while the call was in flight
    assert all(final.startswith(t) for t in texts) and texts[0] != final
    live = summarize(run.events[:2], partial={1: texts[0]})
    assert ("receiving", texts[0]) in live.steps[0].details
    assert run.log.partial == {}


def test_agenerate_in_async_code():
    model = sim.scripted([sim.reply('{"name": "Braga", "population": 193000}')])
    city = asyncio.run(Executor().agenerate(City, "?", model=model))
    assert city == City(name="Braga", population=193000)
