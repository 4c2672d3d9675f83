"""API keys never show: not in events, results, errors, reprs, DataFrames or printed output."""

from __future__ import annotations

import pytest

from executus_nb import Agent, ConfigError, Executor, RunStatus, sim

# a guard against hanging, not a speed bound: the first run of a process imports litellm
WAIT = 120

DICT_KEY = "sk-secret-123456"
ENV_KEY = "sk-env-secret-987654"
# litellm masks "sk-…" keys in its own messages; keys of another shape test our redaction
PLAIN_DICT_KEY = "tok9f8e7d6c5b4a3210"
PLAIN_ENV_KEY = "tok0123456789abcdef"
CLOSED = "http://127.0.0.1:9/v1"  # nothing listens on port 9: the call fails fast


def every_text(executor: Executor, run, agent: Agent) -> dict[str, str]:
    """Everything a user can see of a run, by where it comes from."""
    result = run.wait(timeout=WAIT)
    texts = {f"event {ev.seq} ({ev.kind})": ev.model_dump_json() for ev in run.events}
    texts.update(
        {
            "repr(result)": repr(result),
            "str(result)": str(result),
            "result json": result.model_dump_json(),
            "error message": str(result.error),
            "repr(run)": repr(run),
            "repr(agent)": repr(agent),
            "str(agent)": str(agent),
            "repr(agent.model)": repr(agent.model),
            "repr(executor)": repr(executor),
        }
    )
    frames = {
        "steps_df": run.steps_df(),
        "tool_calls_df": run.tool_calls_df(),
        "usage_df": run.usage_df(),
        "runs_df": executor.runs_df(),
        "executor.steps_df": executor.steps_df(),
    }
    for name, df in frames.items():
        texts[name] = df.to_string()
        texts[f"{name} values"] = str(df.to_dict("records"))
    return texts


def assert_hidden(secret: str, texts: dict[str, str]) -> None:
    leaks = [where for where, text in texts.items() if secret in text]
    assert leaks == [], f"the secret shows in {leaks}"


def test_a_key_in_the_model_dict_never_shows(executor, capfd):
    agent = Agent(model={"model": "openai/x", "api_base": CLOSED, "api_key": DICT_KEY, "max_retries": 0, "timeout": 2})
    run = executor.run(agent, "hello")
    texts = every_text(executor, run, agent)
    result = run.result
    assert result.status is RunStatus.FAILED
    assert "Connection error" in result.error.message  # the key was really used for a call
    assert_hidden(DICT_KEY, texts)
    out, err = capfd.readouterr()
    assert DICT_KEY not in out + err


def test_a_key_from_the_environment_never_shows(executor, monkeypatch, capfd):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    agent = Agent(model={"model": "openai/x", "api_base": CLOSED, "max_retries": 0, "timeout": 2})
    run = executor.run(agent, "hello")
    texts = every_text(executor, run, agent)
    assert run.result.status is RunStatus.FAILED
    assert "Connection error" in run.result.error.message
    assert_hidden(ENV_KEY, texts)
    out, err = capfd.readouterr()
    assert ENV_KEY not in out + err


def echoing_provider(secret: str) -> str:
    """A provider whose error message repeats the key it was given, as some real ones do."""

    def fn(messages, tools):
        raise PermissionError(f"invalid api key {secret} for this project")

    return sim.function(fn)


@pytest.mark.parametrize("key", [DICT_KEY, PLAIN_DICT_KEY])
def test_a_dict_key_echoed_by_the_provider_is_redacted(executor, key):
    agent = Agent(model={"model": echoing_provider(key), "api_key": key})
    run = executor.run(agent, "hello")
    texts = every_text(executor, run, agent)
    assert run.result.status is RunStatus.FAILED
    assert "PermissionError: invalid api key " in run.result.error.message
    assert_hidden(key, texts)


@pytest.mark.parametrize("key", [ENV_KEY, PLAIN_ENV_KEY])
def test_an_environment_key_echoed_by_the_provider_is_redacted(executor, monkeypatch, key):
    monkeypatch.setenv("OPENAI_API_KEY", key)
    agent = Agent(model=echoing_provider(key))
    run = executor.run(agent, "hello")
    texts = every_text(executor, run, agent)
    assert "PermissionError: invalid api key " in run.result.error.message
    assert_hidden(key, texts)


def test_our_redaction_replaces_a_key_litellm_does_not_mask(executor):
    agent = Agent(model={"model": echoing_provider(PLAIN_DICT_KEY), "api_key": PLAIN_DICT_KEY})
    result = executor.run(agent, "hello").wait(timeout=WAIT)
    assert "invalid api key *** for this project" in result.error.message


@pytest.mark.parametrize(
    "fields",
    [
        {"model": {"api_key": DICT_KEY, "api_base": CLOSED}},
        {"model": {"model": "openai/x", "api_key": DICT_KEY}, "tier": "fast"},
        {"model": {"model": "openai/x", "api_key": DICT_KEY}, "max_steps": -1},
    ],
    ids=["model-dict-without-name", "model-and-tier", "bad-bound"],
)
def test_a_configuration_error_does_not_echo_the_key(fields):
    with pytest.raises(ConfigError) as info:
        Agent(**fields)
    assert DICT_KEY[:10] not in str(info.value)  # not even a truncated echo


def test_an_executor_default_model_with_a_bad_dict_does_not_echo_the_key():
    with pytest.raises(ConfigError) as info:
        Executor(model={"api_key": DICT_KEY})
    assert DICT_KEY[:10] not in str(info.value)


def test_a_bad_tier_does_not_echo_the_key():
    with pytest.raises(ConfigError) as info:
        Executor(tiers={"fast": [{"api_key": DICT_KEY, "api_base": CLOSED}]})
    assert DICT_KEY[:10] not in str(info.value)


def test_dumping_an_agent_never_writes_its_key():
    from executus_nb import Agent

    agent = Agent(name="x", model={"model": "openai/x", "api_key": "sk-dump-secret-123", "api_base": "http://h/v1"})
    assert "sk-dump-secret-123" not in agent.model_dump_json()
    assert agent.model_dump()["model"]["params"] == {"api_key": "***", "api_base": "http://h/v1"}
    assert agent.model.params["api_key"] == "sk-dump-secret-123"  # still usable for calls
