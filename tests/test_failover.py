"""Tiers and failover on the loopback server: retryable errors move on, others fail fast, all recorded."""

from __future__ import annotations

import pytest

from executus_nb import Agent, ConfigError, Executor, RunStatus, tool
from executus_nb.model.tier import load_tiers, tiers_from_env
from executus_nb.nb.html import render_html, render_text
from executus_nb.nb.summary import summarize
from tests.openai_server import Fail, OpenAIServer, ToolCall, ToolCalls

pytest_plugins = ["tests.conftest_server"]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture
def second_server():
    with OpenAIServer() as server:
        yield server


def tier(primary, backup, **params):
    return {
        "models": [
            {"model": "openai/primary", "api_base": primary.base_url, "api_key": "sk-a"},
            {"model": "openai/backup", "api_base": backup.base_url, "api_key": "sk-b"},
        ],
        "backoff_s": 0.0,
        **params,
    }


def test_429_then_500_fail_over_to_the_second_model(openai_server, second_server):
    openai_server.fail(429)
    openai_server.fail(500)
    second_server.tool_call("add", {"a": 2, "b": 3})
    second_server.reply("5")
    ex = Executor(tiers={"fast": tier(openai_server, second_server, cooldown_s=0.0)})
    run = ex.run(Agent(name="calc", tools=[add], tier="fast"), "2+3?")
    result = run.wait(timeout=30, quiet=True)

    assert result.status is RunStatus.SUCCEEDED and result.output == "5"
    steps = run.steps_df()
    assert list(zip(steps.kind, steps.name, steps.ok, strict=True)) == [
        ("model", "openai/primary", False),
        ("model", "openai/backup", True),
        ("tool", "add", True),
        ("model", "openai/primary", False),
        ("model", "openai/backup", True),
    ]
    assert list(steps.error_type.dropna()) == ["RateLimitError", "InternalServerError"]
    failovers = [e for e in run.events if e.kind == "failover"]
    assert [(f.from_model, f.to_model, f.error.status_code) for f in failovers] == [
        ("openai/primary", "openai/backup", 429),
        ("openai/primary", "openai/backup", 500),
    ]
    usage = run.usage_df()
    assert list(usage.model) == ["openai/backup"] and usage.requests.iloc[0] == 2
    assert usage.total_tokens.iloc[0] == result.usage.total_tokens > 0
    text = render_text(summarize(run.events))
    assert "failover #1 openai/primary → 429 RateLimitError → openai/backup" in text
    assert "executus-failover" in render_html(summarize(run.events))


def test_401_fails_fast_without_trying_the_next_model(openai_server, second_server):
    openai_server.fail(401)
    ex = Executor(tiers={"fast": tier(openai_server, second_server)})
    result = ex.run(Agent(name="a", tier="fast"), "hi").wait(timeout=30, quiet=True)
    assert result.status is RunStatus.FAILED
    assert result.error.type == "AuthenticationError" and result.error.status_code == 401
    assert second_server.count == 0 and len(result.steps) == 1


def test_every_model_failing_fails_the_run_with_every_attempt_recorded(openai_server, second_server):
    openai_server.fail(500)
    second_server.fail(503)
    ex = Executor(tiers={"fast": tier(openai_server, second_server)})
    run = ex.run(Agent(name="a", tier="fast"), "hi")
    result = run.wait(timeout=30, quiet=True)
    assert result.status is RunStatus.FAILED
    assert [(s.name, s.ok) for s in result.steps] == [("openai/primary", False), ("openai/backup", False)]
    assert result.error.message.startswith(
        "every model of tier 'fast' failed: openai/primary → InternalServerError; "
        "openai/backup → ServiceUnavailableError"
    )
    assert "sk-a" not in result.error.message and "sk-b" not in result.error.message


def test_cooling_model_is_tried_last_on_the_next_run(openai_server, second_server):
    openai_server.fail(429)
    ex = Executor(tiers={"fast": tier(openai_server, second_server, cooldown_s=60)})
    ex.run(Agent(name="a", tier="fast"), "one").wait(timeout=30, quiet=True)
    assert (openai_server.count, second_server.count) == (1, 1)
    result = ex.run(Agent(name="a", tier="fast"), "two").wait(timeout=30, quiet=True)
    assert result.ok and [s.name for s in result.steps] == ["openai/backup"]
    assert (openai_server.count, second_server.count) == (1, 2)


def test_tier_parameters_reach_the_provider(openai_server, second_server):
    ex = Executor(tiers={"fast": tier(openai_server, second_server, temperature=0.25, max_tokens=64)})
    ex.run(Agent(name="a", tier="fast"), "hi").wait(timeout=30, quiet=True)
    body = openai_server.last_request.json
    assert body["temperature"] == 0.25 and body["max_tokens"] == 64
    ex.run(Agent(name="a", tier="fast", temperature=0.9), "hi").wait(timeout=30, quiet=True)
    assert openai_server.last_request.json["temperature"] == 0.9  # the agent's own setting wins


def test_unknown_tier_is_an_error_before_any_call(openai_server, second_server):
    ex = Executor(tiers={"fast": tier(openai_server, second_server)})
    with pytest.raises(ConfigError, match="tier 'smart'.*known tiers: \\['fast'\\]"):
        ex.run(Agent(name="a", tier="smart"), "hi")
    assert openai_server.count == 0


TOML = """
[tiers.fast]
models = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]
temperature = 0.2

[tiers.smart]
models = [{ model = "openai/gpt-4o", api_base = "http://127.0.0.1:9/v1" }]
max_tokens = 1024
"""


def test_tiers_from_toml_yaml_and_environment(tmp_path):
    tiers = load_tiers(TOML)
    assert [m.name for m in tiers["fast"].models] == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]
    assert tiers["fast"].temperature == 0.2 and tiers["smart"].max_tokens == 1024
    assert tiers["smart"].models[0].params == {"api_base": "http://127.0.0.1:9/v1"}
    path = tmp_path / "tiers.yaml"
    path.write_text("fast:\n  - openai/gpt-4o-mini\n  - openai/gpt-4.1-mini\n")
    assert [m.name for m in load_tiers(path)["fast"].models] == ["openai/gpt-4o-mini", "openai/gpt-4.1-mini"]
    env = tiers_from_env({"EXECUTUS_TIER_FAST": "openai/a, openai/b", "OTHER": "x"})
    assert list(env) == ["fast"] and [m.name for m in env["fast"].models] == ["openai/a", "openai/b"]
    with pytest.raises(ConfigError):
        load_tiers({"fast": []})
    with pytest.raises(ConfigError):
        load_tiers({"fast": {"models": ["openai/a"], "colour": "red"}})


# -- per-attempt timeouts ------------------------------------------------------------------------


def _failover_after(run) -> float:
    """Seconds from the primary's call starting to the failover away from it."""
    started = next(e for e in run.events if e.kind == "model_call_started")
    failover = next(e for e in run.events if e.kind == "failover")
    return (failover.ts - started.ts).total_seconds()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_hung_primary_fails_over_after_the_tier_timeout(openai_server, second_server, stream):
    openai_server.hang(60)
    second_server.reply("from the backup")
    ex = Executor(tiers={"fast": tier(openai_server, second_server, timeout_s=1.0)})
    run = ex.run(Agent(name="a", tier="fast", stream=stream, max_runtime_s=30), "hi")
    result = run.wait(timeout=60, quiet=True)

    assert result.status is RunStatus.SUCCEEDED and result.output == "from the backup"
    (failover,) = [e for e in run.events if e.kind == "failover"]
    assert (failover.from_model, failover.to_model) == ("openai/primary", "openai/backup")
    assert (failover.error.type, failover.error.status_code) == ("Timeout", 408)
    assert "timeout_s=1 s" in failover.error.message
    assert 1.0 <= _failover_after(run) < 1.0 + 10  # after ~timeout_s, not litellm's 120 s
    assert [s.ok for s in result.steps] == [False, True]


def test_a_model_timeout_s_wins_over_the_tier_and_a_stalled_stream_times_out(openai_server, second_server):
    openai_server.stall(60)  # headers and a first chunk, then silence
    second_server.reply("from the backup")
    spec = tier(openai_server, second_server, timeout_s=30.0)
    spec["models"][0]["timeout_s"] = 0.5
    ex = Executor(tiers={"fast": spec})
    run = ex.run(Agent(name="a", tier="fast", stream=True, max_runtime_s=20), "hi")
    result = run.wait(timeout=60, quiet=True)
    assert result.ok and result.output == "from the backup"
    assert 0.5 <= _failover_after(run) < 0.5 + 10
    assert [e.error.type for e in run.events if e.kind == "failover"] == ["Timeout"]


def test_a_stream_that_keeps_sending_may_run_longer_than_its_timeout():
    # The streamed bound is the wait for each chunk: a long answer that keeps coming is not cut off.
    with OpenAIServer(chunk_delay_s=0.25) as slow:
        slow.reply("one two three four five six seven eight")
        model = {"model": "openai/slow", "api_base": slow.base_url, "api_key": "sk-a", "timeout_s": 1.0}
        run = Executor().run(Agent(name="a", model=model, stream=True), "hi")
        result = run.wait(timeout=60, quiet=True)
    assert result.ok and result.output == "one two three four five six seven eight"
    assert result.steps[0].duration_s > 1.0


def test_attempt_timeout_defaults_to_60_s_and_a_bad_one_is_a_config_error(openai_server):
    from executus_nb.model.call import DEFAULT_TIMEOUT_S, attempt_timeout

    assert DEFAULT_TIMEOUT_S == 60.0 and attempt_timeout() == 60.0
    assert attempt_timeout(None, None, 20) == 20.0 and attempt_timeout(5, 9, 20) == 5.0
    assert load_tiers({"fast": {"models": ["openai/a"], "timeout_s": 20}})["fast"].timeout_s == 20
    with pytest.raises(ConfigError):
        load_tiers({"fast": {"models": ["openai/a"], "timeout_s": 0}})
    with pytest.raises(ConfigError, match="timeout_s"):
        load_tiers({"fast": {"models": [{"model": "openai/a", "timeout_s": "soon"}]}})
    # The socket's own timeout sits just behind the attempt's bound (litellm's default was 120 s).
    model = {"model": "openai/test-model", "api_base": openai_server.base_url, "api_key": "sk-a"}
    assert Executor().run(Agent(name="a", model=model), "hi").wait(timeout=30, quiet=True).ok
    assert "timeout_s" not in openai_server.last_request.json


# -- max_steps counts every model call, failovers included ---------------------------------------


def test_max_steps_bounds_model_calls_with_failover(openai_server, second_server):
    openai_server.default = Fail(500)
    for _ in range(10):
        second_server.tool_call("add", {"a": 1, "b": 1})
    ex = Executor(tiers={"fast": tier(openai_server, second_server, cooldown_s=0.0)})
    run = ex.run(Agent(name="calc", tools=[add], tier="fast", max_steps=3), "loop forever")
    result = run.wait(timeout=30, quiet=True)

    assert openai_server.count + second_server.count == 3
    assert len([s for s in result.steps if s.kind == "model"]) == 3
    assert result.status is RunStatus.MAX_STEPS and result.error.type == "MaxStepsExceeded"
    assert "max_steps=3" in result.error.message


@pytest.mark.parametrize("max_steps", [1, 2, 4, 5])
def test_model_calls_never_exceed_max_steps(openai_server, second_server, max_steps):
    openai_server.default = Fail(429)
    second_server.default = ToolCalls((ToolCall("add", '{"a": 2, "b": 2}'),))
    ex = Executor(tiers={"fast": tier(openai_server, second_server, cooldown_s=0.0)})
    result = ex.run(Agent(name="calc", tools=[add], tier="fast", max_steps=max_steps), "go").wait(
        timeout=30, quiet=True
    )
    assert openai_server.count + second_server.count == max_steps
    assert result.status is RunStatus.MAX_STEPS
