"""Pipelines: phases in order, each given the previous output (shaped by its mapping), one run-like handle."""

from __future__ import annotations

import asyncio
import threading

import pytest

from executus_nb import Agent, Executor, Phase, Pipeline, PipelineRun, RunStatus, UserError, sim
from executus_nb.types.events import SubRunFinished
from tests.waiting import WAIT, wait_until


def phase_agent(tag: str, seen: dict[str, list[str]]) -> Agent:
    def answer(messages, tools):
        seen.setdefault(tag, []).append(messages[-1]["content"])
        return sim.reply(f"{tag}({messages[-1]['content']})")

    return Agent(name=tag, model=sim.function(answer, name=f"phase-{tag}"))


def draft_critique_revise(seen: dict[str, list[str]], name: str = "dcr") -> Pipeline:
    return Pipeline(
        [
            phase_agent("draft", seen),
            Phase(phase_agent("critique", seen), input=lambda draft: f"Critique this: {draft}"),
            lambda critique: critique.upper(),  # a plain function phase
            phase_agent("revise", seen),
        ],
        name=name,
    )


def test_phases_run_in_order_each_given_the_previous_output_as_its_mapping_shapes_it(executor, warm):
    seen: dict[str, list[str]] = {}
    run = executor.run(draft_critique_revise(seen), "topic")
    assert isinstance(run, PipelineRun)
    result = run.wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.SUCCEEDED
    assert seen == {
        "draft": ["topic"],
        "critique": ["Critique this: draft(topic)"],
        "revise": ["CRITIQUE(CRITIQUE THIS: DRAFT(TOPIC))"],
    }
    assert result.output == "revise(CRITIQUE(CRITIQUE THIS: DRAFT(TOPIC)))"
    assert [r.agent.name for r in run.runs] == ["draft", "critique", "revise"]
    assert {r.parent_run_id for r in run.runs} == {run.run_id}
    assert [p.status for p in run.phases] == [RunStatus.SUCCEEDED] * 4
    assert result.usage.total_tokens == sum(r.result.usage.total_tokens for r in run.runs)
    assert [ev.step for ev in run.events if isinstance(ev, SubRunFinished)] == [1, 2, 4]


def test_await_gives_the_result_and_async_function_phases_are_awaited(executor, warm):
    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text + "!"

    seen: dict[str, list[str]] = {}

    async def main():
        run = executor.run(Pipeline([phase_agent("a", seen), shout, phase_agent("b", seen)]), "x")
        return run, await run

    run, result = asyncio.run(main())
    assert result.output == "b(a(x)!)" and seen["b"] == ["a(x)!"]
    assert result is run.result


def test_structured_output_goes_to_the_next_agent_as_json(executor, warm):
    from pydantic import BaseModel

    class Outline(BaseModel):
        title: str

    seen: dict[str, list[str]] = {}
    first = Agent(name="outline", output_type=Outline, model=sim.scripted([sim.reply('{"title": "T"}')]))
    result = executor.run(Pipeline([first, phase_agent("write", seen)]), "x").wait(timeout=WAIT, quiet=True)
    assert result.ok and seen["write"] == ['{"title":"T"}']


def test_a_failed_phase_stops_the_pipeline_with_its_status_and_error(executor, warm):
    seen: dict[str, list[str]] = {}
    broken = Agent(name="broken", model=sim.failing(500, "provider down"))
    run = executor.run(Pipeline([phase_agent("a", seen), broken, phase_agent("never", seen)]), "x")
    result = run.wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.FAILED
    assert "phase 2 (broken)" in result.error.message and "provider down" in result.error.message
    assert "never" not in seen and [r.agent.name for r in run.runs] == ["a", "broken"]
    assert run.phases[2].status is RunStatus.QUEUED


def test_a_function_phase_that_raises_fails_the_pipeline(executor, warm):
    def explode(_text: str) -> str:
        raise ValueError("bad draft")

    result = executor.run(Pipeline([phase_agent("a", {}), explode]), "x").wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.FAILED
    assert result.error.type == "ValueError" and "phase 2 (explode): bad draft" in result.error.message


def test_cancel_stops_the_running_phase_and_starts_no_other(executor, warm):
    entered = threading.Event()

    async def hang(messages, tools):
        entered.set()
        await asyncio.sleep(WAIT)
        return sim.reply("never")

    seen: dict[str, list[str]] = {}
    slow = Agent(name="slow", model=sim.function(hang, name="pipeline-hang"))
    run = executor.run(Pipeline([phase_agent("a", seen), slow, phase_agent("never", seen)]), "x")
    wait_until(entered.is_set, WAIT)
    assert run.cancel()
    result = run.wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.CANCELLED
    assert run.runs[1].wait(timeout=WAIT, quiet=True).status is RunStatus.CANCELLED
    assert "never" not in seen and run.phases[2].status is RunStatus.QUEUED
    cancelled = [ev for ev in run.events if isinstance(ev, SubRunFinished) and ev.step == 2]
    assert [ev.status for ev in cancelled] == [RunStatus.CANCELLED]  # the pipeline waited for its ending


def test_frames_across_phases_have_a_phase_column(executor, warm):
    seen: dict[str, list[str]] = {}
    run = executor.run(draft_critique_revise(seen), "topic")
    run.wait(timeout=WAIT, quiet=True)
    steps, runs, usage = run.steps_df(), run.runs_df(), run.usage_df()
    for df in (steps, runs, usage):
        assert df.columns[0] == "phase"
    assert list(runs.phase) == ["draft", "critique", "revise"]
    assert list(steps.phase) == ["draft", "critique", "revise"]  # one model call each
    assert list(usage.model) == ["sim/fn-phase-draft", "sim/fn-phase-critique", "sim/fn-phase-revise"]
    assert set(runs.parent_run_id) == {run.run_id}
    assert usage.total_tokens.sum() == run.result.usage.total_tokens


def test_the_view_shows_the_phases_in_sequence_each_with_its_run_view(executor, warm):
    seen: dict[str, list[str]] = {}
    run = executor.run(draft_critique_revise(seen, name="<b>dcr</b>"), "topic")
    run.wait(timeout=WAIT, quiet=True)
    view = run.view()
    html = view.html()
    assert html.startswith('<div class="executus-pipeline executus-status-succeeded"')
    assert html.count('class="executus-pipeline-phase') == 4
    assert html.count("executus-runview") == 3  # the function phase shows its output instead
    assert html.index("draft(topic)") < html.index("Critique this") < html.index("revise(")
    assert "<b>dcr</b>" not in html and "&lt;b&gt;dcr&lt;/b&gt;" in html
    assert len(view.widget.children[1].children) == 4 and view.is_final
    assert "1. draft: succeeded" in view.text()


def test_a_fanout_runs_every_input_through_every_pipeline(executor, warm):
    seen: dict[str, list[str]] = {}
    first = draft_critique_revise(seen, name="dcr")
    second = Pipeline([phase_agent("a", seen), phase_agent("b", seen)], name="ab")
    fan = executor.fanout(agents=[first, second], prompts=["x", "y", "z"])
    fan.wait(timeout=WAIT)
    df = fan.to_df()
    assert df.shape[0] == 6 and set(df.status) == {"succeeded"}
    assert list(df.agent) == ["dcr", "ab"] * 3
    assert list(df.output[df.agent == "ab"]) == ["b(a(x))", "b(a(y))", "b(a(z))"]
    assert df.loc[0, "output"] == "revise(CRITIQUE(CRITIQUE THIS: DRAFT(X)))"
    assert (df.total_tokens > 0).all()
    assert sorted(seen["a"]) == ["x", "y", "z"]
    assert fan.counts()["succeeded"] == 6
    from executus_nb.nb.grid_html import render_grid_html

    assert "revise(" in render_grid_html(fan)


def test_a_pipeline_needs_phases_that_are_agents_or_functions():
    with pytest.raises(UserError, match="at least one phase"):
        Pipeline([])
    with pytest.raises(UserError, match="an Agent or a function"):
        Pipeline(["not a phase"])
    with pytest.raises(UserError, match="Phase\\(input=...\\)"):
        Phase(Agent(), input="nope")


def test_a_bad_agent_phase_is_a_failed_phase_not_a_hang(warm):
    executor = Executor()
    result = executor.run(Pipeline([Agent(name="x", tier="missing")]), "x").wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.FAILED and "tier 'missing'" in result.error.message


def test_a_pipeline_is_a_column_of_agents_not_run_on_models(executor):
    with pytest.raises(UserError, match="give pipelines as agents"):
        executor.fanout(Pipeline([Agent()]), prompts=["x"], models=["sim/echo"])


def test_a_pipeline_with_the_same_agent_twice_labels_its_phases_apart():
    twice = Agent(name="same")
    assert Pipeline([twice, twice]).labels == ["same", "same #2"]
