"""One fold of the typed log: the run's state, the timeline family (calls and markers), the budget shown."""

from __future__ import annotations

import io
import math
import re
import typing
from datetime import UTC, datetime, timedelta

import pytest

from executus_nb import Agent, RunStatus, Usage
from executus_nb.frames import runs_df, steps_df, tool_calls_df, usage_df
from executus_nb.nb.console import StepPrinter
from executus_nb.nb.html import MARKER_LABEL, render_html, render_text
from executus_nb.nb.summary import MARKER_TEXT, summarize
from executus_nb.run.handle import Run
from executus_nb.run.log import RunLog
from executus_nb.types import Event, RunResult
from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    BudgetStopped,
    ErrorInfo,
    Failover,
    MessagesRewritten,
    ModelCallFinished,
    ModelCallStarted,
    OutputRejected,
    RevisionRequested,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from executus_nb.types.fold import HANDLERS, MARKER_EVENTS, MARKER_KINDS, Marker, ModelCallItem, ToolCallItem, fold
from executus_nb.types.identity import RunIdentity

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
USAGE = Usage(requests=1, prompt_tokens=200, completion_tokens=100, total_tokens=300, cost_usd=0.001)
DOWN = ErrorInfo(type="RateLimitError", message="slow down", status_code=429)


def union_members() -> set[type]:
    union, _field = typing.get_args(Event)
    return set(typing.get_args(union))


class Clock:
    """Event times one second apart, so the hand-built log is deterministic."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def hand_log(
    *, budget_left: dict[str, float] | None = None, stop: BudgetStopped | None = None, finish: bool = True
) -> RunLog:
    """A run: a 429 failover, a tool call that waited for approval, a rewrite, a rejection, a review, an answer."""
    log, ts = RunLog("fold-1", "hand", owner="ana", tags=("t",)), Clock()
    e = lambda kind, **f: log.emit(kind, ts=ts(), **f)  # noqa: E731
    e(
        RunStarted,
        prompt="p",
        model="sim/a",
        messages=[{"role": "user", "content": "p"}],
        max_steps=9,
        budget_left=budget_left or {},
    )
    e(ModelCallStarted, step=1, turn=1, model="sim/a")
    e(ModelCallFinished, step=1, turn=1, model="sim/a", error=DOWN, latency_s=0.1)
    e(Failover, step=1, turn=1, from_model="sim/a", to_model="sim/b", error=DOWN)
    e(ModelCallStarted, step=2, turn=1, model="sim/b")
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}],
    }
    e(ModelCallFinished, step=2, turn=1, model="sim/b", message=call, usage=USAGE, latency_s=0.2)
    e(ToolCallStarted, step=3, turn=1, call_id="c1", name="add", arguments="{}")
    e(ApprovalRequested, step=3, call_id="c1", name="add", arguments="{}", rule="ask add")
    if not finish:
        return log
    e(ApprovalResolved, step=3, call_id="c1", name="add", decision="allow", rule="ask add", by="user")
    e(ToolCallFinished, step=3, turn=1, call_id="c1", name="add", result="5", duration_s=0.3)
    e(MessagesRewritten, step=4, turn=2, messages=[{"role": "user", "content": "short"}])
    e(ModelCallStarted, step=4, turn=2, model="sim/b")
    e(
        ModelCallFinished,
        step=4,
        turn=2,
        model="sim/b",
        message={"role": "assistant", "content": "five?"},
        usage=USAGE,
        latency_s=0.2,
    )
    e(OutputRejected, turn=2, raw="five?", errors="not an int", feedback="give an int")
    if stop is not None:
        log.emit(type(stop), ts=ts(), **stop.model_dump(exclude={"identity", "seq", "ts", "kind"}))
        e(
            RunFinished,
            status=RunStatus.BUDGET_EXCEEDED,
            steps=4,
            usage=USAGE + USAGE,
            error=ErrorInfo(type="BudgetExceeded", message="max_usd (executor) reached"),
        )
        return log
    e(ModelCallStarted, step=5, turn=3, model="sim/b")
    e(
        ModelCallFinished,
        step=5,
        turn=3,
        model="sim/b",
        message={"role": "assistant", "content": "5"},
        usage=USAGE,
        latency_s=0.2,
    )
    e(RevisionRequested, turn=3, output="5", feedback="say it in words")
    e(ModelCallStarted, step=6, turn=4, model="sim/b")
    e(
        ModelCallFinished,
        step=6,
        turn=4,
        model="sim/b",
        message={"role": "assistant", "content": "five"},
        usage=USAGE,
        latency_s=0.2,
    )
    e(RunFinished, status=RunStatus.SUCCEEDED, output="five", steps=6, usage=USAGE + USAGE + USAGE + USAGE)
    return log


def run_of(log: RunLog) -> Run:
    run = Run(log.identity.run_id, Agent(name="hand"), "p", "sim/a", log, body=None)
    if any(isinstance(ev, RunFinished) for ev in log.events):
        run.result = RunResult.from_events(log.events)
    return run


# -- one fold for every event kind -------------------------------------------------------


def test_the_fold_handles_exactly_the_event_kinds_of_the_union():
    assert set(HANDLERS) == union_members()


def test_every_marker_kind_has_its_text_and_its_label():
    assert set(MARKER_EVENTS) <= union_members()
    assert set(MARKER_TEXT) == set(MARKER_EVENTS)
    assert set(MARKER_LABEL) == set(MARKER_KINDS)
    assert set(MARKER_KINDS) == {
        "failover",
        "messages_rewritten",
        "revision_requested",
        "output_rejected",
        "budget_stopped",
        "compacted",
        "review",
    }


def test_the_fold_gives_the_runs_state():
    state = fold(hand_log().events)
    assert state.identity == RunIdentity(run_id="fold-1", agent="hand", owner="ana", tags=("t",))
    assert state.status is RunStatus.SUCCEEDED and state.output == "five" and state.error is None
    assert state.prompt == "p" and state.started_at == T0 + timedelta(seconds=1)
    assert state.finished_at == T0 + timedelta(seconds=len(hand_log().events))
    assert state.models_tried == ["sim/a", "sim/b"] and state.model == "sim/b"
    assert state.usage == USAGE + USAGE + USAGE + USAGE  # the failed call counts nothing
    assert [f.to_model for f in state.failovers] == ["sim/b"]
    assert [(d.call_id, d.decision, d.by) for d in state.decisions] == [("c1", "allow", "user")]
    assert state.pending == {} and state.steps == 6 and state.model_calls == 5
    assert [type(i).__name__ if not isinstance(i, Marker) else i.marker_kind for i in state.timeline] == [
        "ModelCallItem",
        "failover",
        "ModelCallItem",
        "ToolCallItem",
        "messages_rewritten",
        "ModelCallItem",
        "output_rejected",
        "ModelCallItem",
        "revision_requested",
        "ModelCallItem",
    ]


def test_a_run_in_flight_has_its_pending_approval_and_open_step():
    state = fold(hand_log(finish=False).events)
    assert state.status is RunStatus.RUNNING and not state.finished
    assert list(state.pending) == ["c1"]
    tool = state.calls[3]
    assert isinstance(tool, ToolCallItem) and tool.ok is None and tool.decision is None
    assert summarize(hand_log(finish=False).events).pending[0].call_id == "c1"


def test_the_fold_adds_one_event_at_a_time_and_says_which_item_it_changed():
    log = hand_log()
    state = fold([])
    changed = [state.add(ev) for ev in log.events]
    assert changed[0] is None  # RunStarted
    assert isinstance(changed[1], ModelCallItem) and changed[2] is changed[1]  # started, then finished
    assert isinstance(changed[3], Marker) and changed[3].marker_kind == "failover"
    assert state.events == len(log.events)


def test_result_and_frames_are_projections_of_the_fold():
    log = hand_log()
    run = run_of(log)
    result = run.result
    assert (result.model, result.models, result.usage, result.budget) == (
        "sim/b",
        ["sim/a", "sim/b"],
        USAGE + USAGE + USAGE + USAGE,
        None,
    )
    assert [s.step for s in result.steps] == [1, 2, 3, 4, 5, 6]
    steps = steps_df(log.events)
    assert steps.kind.tolist() == ["model", "model", "tool", "model", "model", "model"]
    assert steps.ok.tolist() == [False, True, True, True, True, True]
    tools = tool_calls_df(log.events)
    assert tools[["tool", "decision", "decided_by", "rule"]].values.tolist() == [["add", "allow", "user", "ask add"]]
    assert usage_df(log.events)[["model", "requests", "total_tokens"]].values.tolist() == [["sim/b", 4, 1200]]
    row = runs_df([run]).iloc[0]
    assert (row.model, row.status, row.steps, row.model_calls, row.tool_calls) == ("sim/b", "succeeded", 6, 5, 1)
    assert row.total_tokens == 1200 and row.cost_usd == pytest.approx(0.004) and row.budget is None


# -- markers in the timeline ---------------------------------------------------------------


def test_markers_render_in_the_timeline_at_their_place_in_the_static_html():
    html = render_html(summarize(hand_log().events))
    timeline = html[html.index('class="executus-timeline"') :]
    timeline = timeline[: timeline.index('class="executus-output"')]
    order = re.findall(r'class="executus-(step|marker) (?:executus-kind-(\w+)|executus-marker-(\w+))', timeline)
    assert [kind or marker for _, kind, marker in order] == [
        "model",
        "failover",
        "model",
        "tool",
        "messages_rewritten",
        "model",
        "output_rejected",
        "model",
        "revision_requested",
        "model",
    ]
    assert 'class="executus-marker executus-marker-failover executus-failover"' in timeline
    assert "sim/a → 429 RateLimitError → sim/b" in timeline


def test_markers_print_in_the_text_and_the_terminal_at_their_place():
    lines = render_text(summarize(hand_log().events)).splitlines()[1:]
    assert [ln.split()[0] if ln.startswith("  #") else ln.split()[0] + " " + ln.split()[1] for ln in lines] == [
        "#1",
        "failover #1",
        "#2",
        "#3",
        "messages rewritten",
        "#4",
        "output rejected",
        "#5",
        "revision requested",
        "#6",
    ]
    stream = io.StringIO()
    StepPrinter(hand_log(), stream).close()  # it subscribes with replay, as a terminal wait() does
    printed = stream.getvalue().splitlines()
    assert printed[:-1] == lines
    assert printed[-1].startswith("Run fold-1 · hand · sim/a, sim/b · succeeded · 6 steps")


def test_a_budget_stop_is_a_marker_and_names_the_budget_in_the_result_and_runs_df():
    stop = BudgetStopped(run_id="x", agent="x", step=5, budget="max_usd", scope="executor", limit=0.002, spent=0.002)
    log = hand_log(stop=stop)
    run = run_of(log)
    assert run.result.status is RunStatus.BUDGET_EXCEEDED and run.result.budget == "max_usd (executor)"
    assert runs_df([run]).budget.tolist() == ["max_usd (executor)"]
    assert fold(log.events).budget_stop.limit == 0.002
    html = render_html(summarize(log.events))
    marker = re.search(r'<div class="executus-marker executus-marker-budget_stopped"[^>]*>([^<]*)</div>', html)
    assert marker and "max_usd (executor) stopped before #5: spent $0.0020 of $0.0020" in marker.group(1)
    assert "budget stopped max_usd (executor) stopped before #5" in render_text(summarize(log.events))
    refused = BudgetStopped(run_id="y", agent="y", budget="max_steps", scope="run", limit=0, spent=0, refused=True)
    assert "refused before any model call" in MARKER_TEXT[BudgetStopped](refused)


def test_runs_without_a_budget_stop_have_budget_none():
    assert RunResult.from_events(hand_log().events).budget is None


# -- the budget left in the header -------------------------------------------------------


BUDGET = {"max_usd": 0.008, "max_tokens": 2_400, "max_steps": 8}


def test_the_fold_counts_the_budget_left_from_run_started_minus_this_runs_spending():
    left = fold(hand_log(budget_left=BUDGET).events).budget_left()
    assert left["max_usd"] == pytest.approx(0.004) and left["max_tokens"] == 1_200 and left["max_steps"] == 3
    assert fold(hand_log().events).budget_left() == {}
    runtime = fold(hand_log(budget_left={"max_runtime_s": 60.0}).events).budget_left()
    assert runtime["max_runtime_s"] == pytest.approx(60.0 - (len(hand_log().events) - 1))


def test_the_header_shows_the_budget_left_in_html_text_and_the_printer():
    log = hand_log(budget_left=BUDGET)
    html = render_html(summarize(log.events))
    shown = re.search(r'<span class="executus-budget">([^<]*)</span>', html)
    assert shown and shown.group(1) == "budget left: $0.0040 · 1,200 tokens · 3 steps"
    assert render_text(summarize(log.events), steps=False).endswith("· budget left: $0.0040 · 1,200 tokens · 3 steps")
    assert "executus-budget" not in render_html(summarize(hand_log().events))
    stream = io.StringIO()
    StepPrinter(log, stream).close()
    assert stream.getvalue().splitlines()[-1].endswith("budget left: $0.0040 · 1,200 tokens · 3 steps")


def test_the_runview_widget_shows_the_budget_and_the_markers():
    pytest.importorskip("ipywidgets")
    from executus_nb.nb.runview import RunView

    view = RunView(run_of(hand_log(budget_left=BUDGET)))
    body = view._body.value
    assert '<span class="executus-budget">budget left: $0.0040 · 1,200 tokens · 3 steps</span>' in body
    assert body.index("executus-marker-failover") < body.index('data-step="2"')
    assert "executus-status-succeeded" in view.widget._dom_classes


def test_an_unknown_price_leaves_the_usd_budget_unknown_not_zero():
    log = RunLog("nan", "hand")
    log.emit(RunStarted, prompt="p", model="m", messages=[], max_steps=3, budget_left={"max_usd": 1.0})
    log.emit(ModelCallStarted, step=1, turn=1, model="m")
    log.emit(ModelCallFinished, step=1, turn=1, model="m", usage=Usage(requests=1, cost_usd=math.nan))
    assert math.isnan(fold(log.events).budget_left()["max_usd"])
