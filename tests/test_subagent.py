"""An agent used as a tool: a sub-run of the calling run, named by it, counted in it, bound and cancelled with it."""

from __future__ import annotations

import asyncio
import threading

from executus_nb import Agent, Budget, Executor, RunStatus, sim, tool
from executus_nb.nb.html import render_html
from executus_nb.nb.summary import summarize
from executus_nb.types.events import BudgetStopped, SubRunFinished
from tests.waiting import WAIT, wait_until


def child_agent(seen: list[str], name: str = "researcher", reply: str = "found: ") -> Agent:
    def answer(messages, tools):
        seen.append(messages[-1]["content"])
        return sim.reply(reply + messages[-1]["content"])

    return Agent(name=name, model=sim.function(answer, name=f"child-{name}"))


def lead(child: Agent, **options) -> Agent:
    model = sim.scripted([sim.call("researcher", input="find X"), sim.reply("done")])
    return Agent(name="lead", tools=[child.as_tool()], model=model, **options)


def test_the_tool_runs_the_agent_on_its_input_and_returns_its_output(executor, warm):
    seen: list[str] = []
    run = executor.run(lead(child_agent(seen)), "go")
    result = run.wait(timeout=WAIT, quiet=True)
    assert result.ok and result.output == "done"
    assert seen == ["find X"]  # what the child's model received
    tool_step = result.steps[1]
    assert (tool_step.kind, tool_step.name, tool_step.ok, tool_step.result) == (
        "tool",
        "researcher",
        True,
        "found: find X",
    )
    schema = child_agent([]).as_tool().schema["function"]
    assert schema["name"] == "researcher" and list(schema["parameters"]["properties"]) == ["input"]


def test_the_sub_run_names_its_parent_in_every_frame_and_starts_its_own_conversation(executor, warm):
    run = executor.run(lead(child_agent([])), "go")
    run.wait(timeout=WAIT, quiet=True)
    runs = executor.runs_df().set_index("agent")
    parent_id = run.run_id
    assert runs.loc["lead", "parent_run_id"] is None
    assert runs.loc["researcher", "parent_run_id"] == parent_id
    child_id = runs.loc["researcher", "run_id"]
    assert runs.loc["researcher", "conversation_id"] == child_id  # its own conversation
    steps = executor.steps_df()
    assert set(steps.loc[steps.run_id == child_id, "parent_run_id"]) == {parent_id}
    assert set(steps.loc[steps.run_id == parent_id, "parent_run_id"].isna()) == {True}
    child = next(r for r in executor.runs if r.run_id == child_id)
    assert child.parent_run_id == parent_id and child.tool_calls_df().empty


def test_usage_rolls_up_into_the_parents_totals(executor, warm):
    run = executor.run(lead(child_agent([])), "go")
    result = run.wait(timeout=WAIT, quiet=True)
    child = next(r for r in executor.runs if r.run_id != run.run_id)
    own = sum(s.total_tokens for s in result.steps if s.kind == "model")
    assert child.result.usage.total_tokens > 0
    assert result.usage.total_tokens == own + child.result.usage.total_tokens
    assert result.usage.requests == 3  # two of the lead's calls and the child's one
    runs = executor.runs_df().set_index("run_id")
    assert runs.loc[run.run_id, "total_tokens"] == result.usage.total_tokens
    (finished,) = [ev for ev in run.events if isinstance(ev, SubRunFinished)]
    assert (finished.sub_run_id, finished.step, finished.status) == (child.run_id, 2, RunStatus.SUCCEEDED)
    # the executor's usage per model counts each call once
    assert executor.usage_df().total_tokens.sum() == result.usage.total_tokens


@tool
def noop() -> str:
    """Do nothing."""
    return "ok"


def budget_parent() -> tuple[Agent, Agent]:
    child = Agent(
        name="researcher",
        instructions="You research. " * 40,
        tools=[noop],
        model=sim.scripted([sim.call("noop"), sim.call("noop"), sim.call("noop"), sim.reply("done")]),
    )
    return child, lead(child)


def test_the_parents_budget_binds_the_sub_run_and_a_sub_run_that_exceeds_it_stops(warm):
    child, parent = budget_parent()
    calibration = Executor()
    calibration.run(parent, "go").wait(timeout=WAIT, quiet=True)
    steps = calibration.steps_df()
    models = steps[steps.kind == "model"]
    lead_first = models.iloc[0].total_tokens
    child_calls = models[models.agent == "researcher"]
    # room for the lead's first call and the child's first, not for the child's second request
    limit = int(lead_first + child_calls.iloc[0].total_tokens + child_calls.iloc[1].prompt_tokens - 1)

    executor = Executor()
    run = executor.run(parent, "go", budget=Budget(max_tokens=limit))
    result = run.wait(timeout=WAIT, quiet=True)
    sub = next(r for r in executor.runs if r.run_id != run.run_id)
    assert sub.result.status is RunStatus.BUDGET_EXCEEDED
    (stop,) = [ev for ev in sub.events if isinstance(ev, BudgetStopped)]
    assert (stop.budget, stop.scope) == ("max_tokens", "run")
    tool_step = result.steps[1]
    assert tool_step.ok is False and "budget_exceeded" in tool_step.error_message
    assert result.status is RunStatus.BUDGET_EXCEEDED  # the lead's next call no longer fits either
    assert result.usage.total_tokens <= limit
    # what the sub-run spent is counted once: the lead's budget saw exactly the two runs' calls
    assert result.usage.total_tokens == lead_first + sub.result.usage.total_tokens


def test_cancelling_the_parent_cancels_the_sub_run(executor, warm):
    entered = threading.Event()

    async def hang(messages, tools):
        entered.set()
        await asyncio.sleep(WAIT)
        return sim.reply("never")

    child = Agent(name="researcher", model=sim.function(hang, name="hanging-child"))
    run = executor.run(lead(child), "go")
    wait_until(entered.is_set, WAIT)
    run.cancel()
    result = run.wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.CANCELLED
    sub = next(r for r in executor.runs if r.run_id != run.run_id)
    assert sub.wait(timeout=WAIT, quiet=True).status is RunStatus.CANCELLED
    assert sub.parent_run_id == run.run_id
    tool_step = result.steps[1]
    assert (tool_step.kind, tool_step.ok, tool_step.error_type) == ("tool", False, "RunCancelled")


def test_a_failing_sub_run_is_a_failed_tool_call_the_parent_sees(executor, warm):
    child = Agent(name="researcher", model=sim.failing(500, "boom"))
    result = executor.run(lead(child), "go").wait(timeout=WAIT, quiet=True)
    assert result.ok  # the lead answered after reading the error
    tool_step = result.steps[1]
    assert tool_step.ok is False and tool_step.error_type == "ToolError"
    assert "ended failed" in tool_step.error_message


def test_the_parents_view_nests_the_sub_runs_timeline_escaped(executor, warm):
    child = child_agent([], reply="<script>alert(1)</script> ")
    run = executor.run(lead(child), "go")
    run.wait(timeout=WAIT, quiet=True)
    html = render_html(summarize(run.log.events))
    assert html.count('class="executus-subrun"') == 1
    nested = html.split('class="executus-subrun"', 1)[1]
    assert "executus-runview" in nested and "executus-step" in nested and "sim/fn-child-researcher" in nested
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert run.view().html().count("executus-subrun") == 1  # the live view renders it too


def test_as_tool_outside_an_executor_run_is_a_clear_tool_error():
    import pytest

    from executus_nb.errors import ToolError

    with pytest.raises(ToolError, match="inside a run of an Executor"):
        asyncio.run(child_agent([]).as_tool().invoke({"input": "x"}, ctx=None))
