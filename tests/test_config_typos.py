"""Misspelt keywords of the configuration (Agent, tiers, Policy and its rules, Executor) are errors with a hint."""

from __future__ import annotations

import pytest

from executus_nb import Agent, ConfigError, Executor, sim
from executus_nb.errors import UnknownOptionError
from executus_nb.model.tier import Tier
from executus_nb.tool.policy import Policy


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("max_step", "max_steps"),
        ("instruction", "instructions"),
        ("tool", "tools"),
        ("modle", "model"),
        ("max_runtime", "max_runtime_s"),
        ("temprature", "temperature"),
        ("output_typ", "output_type"),
        ("streem", "stream"),
    ],
)
def test_agent_typo_names_the_keyword_and_the_closest_one(typo, suggestion):
    with pytest.raises(ConfigError) as info:
        Agent(name="x", **{typo: 3})
    message = str(info.value)
    assert f"unknown keyword {typo!r}" in message and f"did you mean {suggestion!r}?" in message
    assert isinstance(info.value, TypeError)  # also what Python raises for a bad keyword


def test_agent_typo_is_never_ignored_in_a_run():
    with pytest.raises(UnknownOptionError):
        Executor().run(Agent(name="x", model=sim.scripted([sim.reply("hi")]), max_step=3), "go")


def test_a_keyword_far_from_every_field_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid keywords: .*max_steps"):
        Agent(name="x", zzzz=1)


def test_a_typo_beside_another_problem_reports_both_without_the_input():
    with pytest.raises(ConfigError) as info:
        Agent(name="x", model={"model": "openai/x", "api_key": "sk-secret-123456789"}, max_tokens=0, max_step=2)
    message = str(info.value)
    assert "max_tokens" in message and "did you mean 'max_steps'" in message
    assert "sk-secret" not in message


@pytest.mark.parametrize(
    ("build", "typo", "suggestion"),
    [
        (lambda: Executor(polcy=None), "polcy", "policy"),
        (lambda: Executor(tier={}), "tier", "tiers"),
        (lambda: Executor(max_runing=2), "max_runing", "max_running"),
        (lambda: Executor(tiers={"t": {"models": ["sim/x"], "backof_s": 1}}), "backof_s", "backoff_s"),
        (lambda: Tier(name="t", models=["sim/x"], cooldown=5), "cooldown", "cooldown_s"),
        (lambda: Policy().deny("web_fetch", hosts="*.evil.example"), "hosts", "host"),
        (lambda: Policy().allow("search", arg={"q": "*"}), "arg", "args"),
        (lambda: Policy(defualt="deny"), "defualt", "default"),
        (lambda: Policy.from_dict({"rule": []}), "rule", "rules"),
        (lambda: Policy.from_dict({"rules": [{"action": "deny", "tol": "x"}]}), "tol", "tool"),
        (lambda: Executor(tiers={"t": {"model": ["sim/x", "sim/y"], "timeout_s": 5}}), "model", "models"),
        (lambda: Executor(tiers={"t": {"modles": ["sim/x"]}}), "modles", "models"),
        (lambda: sim.scripted([sim.reply("hi")], latncy_s=1), "latncy_s", "latency_s"),
        (lambda: sim.function(lambda messages, tools: sim.reply("hi"), latncy_s=1), "latncy_s", "latency_s"),
        (lambda: sim.failing(429, mesage="busy"), "mesage", "message"),
        (lambda: sim.raw_call("f", "{", callid="c1"), "callid", "call_id"),
    ],
)
def test_other_configuration_typos(build, typo, suggestion):
    with pytest.raises(UnknownOptionError) as info:
        build()
    assert f"unknown keyword {typo!r}" in str(info.value) and f"did you mean {suggestion!r}?" in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, TypeError)


def test_model_dicts_stay_open_for_litellm_parameters():
    agent = Agent(name="x", model={"model": "sim/x", "top_p": 0.5, "seed": 7})
    assert agent.model.params["top_p"] == 0.5


@pytest.mark.parametrize(
    "build",
    [
        lambda: Agent(name="x", model={"modle": "openai/x", "api_key": "sk-secret-123456789"}),
        lambda: Executor(tiers={"t": {"models": [{"mdel": "openai/x"}]}}),
        lambda: Executor(tiers={"t": {"modle": "openai/x"}}),
    ],
)
def test_a_misspelt_model_key_of_a_model_dict_is_named_with_the_closest_one(build):
    with pytest.raises(ConfigError) as info:
        build()
    assert "did you mean 'model'?" in str(info.value) and "sk-secret" not in str(info.value)
