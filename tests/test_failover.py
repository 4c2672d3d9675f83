"""Tiers and failover on the loopback server: retryable errors move on, others fail fast, all recorded."""

from __future__ import annotations

import pytest

from executus_nb import Agent, ConfigError, Executor, RunStatus, tool
from executus_nb.model.tier import load_tiers, tiers_from_env
from executus_nb.nb.html import render_html, render_text
from executus_nb.nb.summary import summarize
from tests.openai_server import OpenAIServer

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
    return {"models": [
        {"model": "openai/primary", "api_base": primary.base_url, "api_key": "sk-a"},
        {"model": "openai/backup", "api_base": backup.base_url, "api_key": "sk-b"},
    ], "backoff_s": 0.0, **params}


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
    assert list(zip(steps.kind, steps.name, steps.ok)) == [
        ("model", "openai/primary", False), ("model", "openai/backup", True), ("tool", "add", True),
        ("model", "openai/primary", False), ("model", "openai/backup", True)]
    assert list(steps.error_type.dropna()) == ["RateLimitError", "InternalServerError"]
    failovers = [e for e in run.events if e.kind == "failover"]
    assert [(f.from_model, f.to_model, f.error.status_code) for f in failovers] == [
        ("openai/primary", "openai/backup", 429), ("openai/primary", "openai/backup", 500)]
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
    assert result.error.message.startswith("every model of tier 'fast' failed: openai/primary → InternalServerError; "
                                           "openai/backup → ServiceUnavailableError")
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
