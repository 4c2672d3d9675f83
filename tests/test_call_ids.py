"""Tool-call ids: unique within a run whatever the provider sends; approvals, joins and answers key on them."""

from __future__ import annotations

import threading

import pytest

from executus_nb import Agent, Executor, RunStatus, sim, tool
from executus_nb.tool.policy import Policy
from tests.openai_server import ToolCall, ToolCalls

pytest_plugins = ["tests.conftest_server"]


@tool
def read(x: str) -> str:
    """Read something."""
    return f"read {x}"


@tool
def erase(x: str) -> str:
    """Erase something."""
    return f"erased {x}"


def _recording(turns: list[sim.SimTurn]) -> tuple[str, list[list[dict]]]:
    """A sim model playing ``turns`` that records every conversation it is sent."""
    seen: list[list[dict]] = []

    def fn(messages, tools):
        seen.append([dict(m) for m in messages])
        return turns[sum(m.get("role") == "assistant" for m in messages)]

    return sim.function(fn, name=f"ids-{id(seen)}"), seen


def _assert_answers_match(messages: list[dict]) -> None:
    """Every assistant tool call is answered once, by a tool message carrying the same, unique id."""
    asked = [tc["id"] for m in messages if m.get("role") == "assistant" for tc in m.get("tool_calls") or []]
    answered = [m["tool_call_id"] for m in messages if m.get("role") == "tool"]
    assert len(set(asked)) == len(asked), asked
    assert answered == asked


@pytest.mark.parametrize("stream", [False, True])
def test_two_calls_with_one_id_in_a_turn_keep_their_own_decisions(stream):
    model, seen = _recording(
        [
            sim.calls(sim.call("erase", x="a", call_id="dup"), sim.call("read", x="b", call_id="dup")),
            sim.reply("done"),
        ]
    )
    ex = Executor(policy=Policy().deny("erase"))
    run = ex.run(Agent(name="a", tools=[read, erase], model=model, stream=stream), "go")
    result = run.wait(timeout=30, quiet=True)

    assert result.status is RunStatus.SUCCEEDED
    df = run.tool_calls_df()
    assert list(df.tool) == ["erase", "read"]
    assert list(df.decision) == ["deny", "allow"]
    assert list(df.ok) == [False, True]
    assert df.call_id.is_unique and list(df.provider_call_id) == ["dup", "dup"]
    assert list(df.result) == [df.result[0], "read b"] and "denied" in df.result[0]
    _assert_answers_match(seen[-1])


def test_ids_reused_across_turns_are_told_apart():
    model, seen = _recording(
        [
            sim.call("erase", x="a", call_id="call_0"),
            sim.call("read", x="b", call_id="call_0"),
            sim.call("read", x="c", call_id="call_0"),
            sim.reply("done"),
        ]
    )
    run = Executor(policy=Policy().deny("erase")).run(Agent(name="a", tools=[read, erase], model=model), "go")
    assert run.wait(timeout=30, quiet=True).ok

    df = run.tool_calls_df()
    assert list(df.decision) == ["deny", "allow", "allow"]
    assert df.call_id.is_unique and df.call_id[0] == "call_0"  # the provider's id is kept while it is unique
    assert set(df.provider_call_id) == {"call_0"}
    steps = [s for s in run.result.steps if s.kind == "tool"]
    assert [s.call_id for s in steps] == list(df.call_id)
    _assert_answers_match(seen[-1])


def test_each_of_two_same_id_calls_can_be_approved():
    model, _ = _recording(
        [
            sim.calls(sim.call("erase", x="a", call_id="same"), sim.call("erase", x="b", call_id="same")),
            sim.reply("done"),
        ]
    )
    ex = Executor(policy=Policy(approver="code", ask_timeout_s=60).ask("erase"))
    run = ex.run(Agent(name="a", tools=[erase], model=model), "go")
    answered: list[str] = []

    def approver():
        while len(answered) < 2:
            request = run.wait_for_approval(timeout=30)
            assert request is not None
            answered.append(request.call_id)
            run.approve(request.call_id)

    t = threading.Thread(target=approver)
    t.start()
    result = run.wait(timeout=60, quiet=True)
    t.join(30)
    assert result.ok
    df = run.tool_calls_df()
    assert sorted(answered) == sorted(df.call_id) and len(set(answered)) == 2
    assert list(df.decision) == ["allow", "allow"] and list(df.result) == ["erased a", "erased b"]


def test_http_provider_reusing_ids_gets_matching_unique_ids_back(openai_server):
    openai_server.enqueue(
        ToolCalls((ToolCall("read", '{"x": "a"}', id="call_0"), ToolCall("read", '{"x": "b"}', id="call_0"))),
        ToolCalls((ToolCall("read", '{"x": "c"}', id="call_0"),)),
        "done",
    )
    agent = Agent(
        name="http",
        tools=[read],
        model={"model": "openai/test-model", "api_base": openai_server.base_url, "api_key": "sk-test", "timeout": 10},
    )
    run = Executor().run(agent, "go")
    assert run.wait(timeout=30, quiet=True).ok

    last = openai_server.requests[-1].messages
    _assert_answers_match(last)
    df = run.tool_calls_df()
    assert df.call_id.is_unique and list(df.provider_call_id) == ["call_0"] * 3
    assert [m["content"] for m in last if m["role"] == "tool"] == ["read a", "read b", "read c"]


@pytest.mark.parametrize("provider_id", [None, ""])
def test_calls_without_an_id_get_one(provider_id):
    turn = sim.calls(sim.call("read", x="a"), sim.call("read", x="b"))
    blank = sim.SimTurn(tool_calls=tuple(tc.model_copy(update={"id": provider_id}) for tc in turn.tool_calls))
    model, seen = _recording([blank, blank, sim.reply("ok")])
    run = Executor().run(Agent(name="a", tools=[read], model=model), "go")
    assert run.wait(timeout=30, quiet=True).ok
    df = run.tool_calls_df()
    assert df.call_id.is_unique and all(df.call_id)
    if provider_id == "":  # the provider sent no id: none is made up in its name
        assert df.provider_call_id.isna().all()
    _assert_answers_match(seen[-1])
