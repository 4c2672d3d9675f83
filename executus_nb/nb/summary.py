"""A view-ready summary of a run's event log: header figures and one entry per step."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from executus_nb.types.events import (
    ApprovalRequested,
    BudgetStopped,
    Compacted,
    ErrorInfo,
    Event,
    Failover,
    MessagesRewritten,
    OutputRejected,
    Reviewed,
    RevisionRequested,
    SubRunFinished,
    utcnow,
)
from executus_nb.types.fmt import DETAIL_CHARS, UNKNOWN_TEXT, clip, money, plural, pretty_text, safe_str, show
from executus_nb.types.fold import Marker, ModelCallItem, RunFold, TimelineItem, ToolCallItem
from executus_nb.types.status import RunStatus


@dataclass
class StepView:
    """One bar of the timeline and its details."""

    step: int
    turn: int
    kind: str
    name: str
    start_s: float
    duration_s: float | None = None
    ok: bool | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False
    details: list[tuple[str, str]] = field(default_factory=list)
    error: ErrorInfo | None = None
    decision: str | None = None
    subrun: RunSummary | None = None  # the sub-run a tool call ran (an agent used as a tool): its own view

    @property
    def state(self) -> str:
        if self.ok is None:
            return "running"
        if self.ok:
            return "ok"
        return "cancelled" if self.error is not None and self.error.type == "RunCancelled" else "failed"


@dataclass
class MarkerView:
    """A marker of the timeline: ``kind`` is its event's kind (``failover``…), ``text`` what it says."""

    kind: str
    text: str
    start_s: float
    step: int | None = None
    detail: str | None = None  # shown expandable under the marker (a compaction's summary)


@dataclass
class RunSummary:
    """The header of a run view: who, which models, where it stands, what it cost, the budget left.

    ``timeline`` holds the steps and the markers in the order they happened; ``steps`` the steps alone.
    """

    run_id: str
    agent: str
    status: RunStatus
    models: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    steps: list[StepView] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: ErrorInfo | None = None
    output: Any = None
    pending: list[ApprovalRequested] = field(default_factory=list)
    failovers: list[str] = field(default_factory=list)
    timeline: list[StepView | MarkerView] = field(default_factory=list)
    budget_left: dict[str, float] = field(default_factory=dict)
    budget: str | None = None  # which budget ended the run: "max_usd (executor)"

    @property
    def cost_text(self) -> str:
        return money(self.cost_usd, unknown=UNKNOWN_TEXT)


def _message_body(m: Any) -> str:
    if not isinstance(m, dict):
        return show(m)
    content = m.get("content")
    body = clip(safe_str(content)) if isinstance(content, str) else show(content) if content else ""
    for tc in m.get("tool_calls") or []:
        fn = tc.get("function", {}) if isinstance(tc, dict) else {}
        fn = fn if isinstance(fn, dict) else {}
        body += f"\n→ {clip(safe_str(fn.get('name')), 200)}({clip(safe_str(fn.get('arguments')))})"
    return f"[{clip(safe_str(m.get('role')), 40)}] {body.strip()}"


def _messages_text(messages: list[Any], limit: int = DETAIL_CHARS) -> str:
    """The messages as text, each capped, the whole capped (``… N more messages``)."""
    lines: list[str] = []
    size = 0
    for i, m in enumerate(messages):
        if size > limit:
            lines.append(f"… [{plural(len(messages) - i, 'more message')}]")
            break
        lines.append(_message_body(m))
        size += len(lines[-1])
    return clip("\n".join(lines), limit + 200)


def failover_text(ev: Failover) -> str:
    code = f"{ev.error.status_code} " if ev.error.status_code else ""
    return f"#{ev.step} {ev.from_model} → {code}{ev.error.type} → {ev.to_model}"


def _rewritten_text(ev: MessagesRewritten) -> str:
    return f"before #{ev.step}: a hook rewrote the conversation, {plural(len(ev.messages), 'message')} sent from here"


def _revision_text(ev: RevisionRequested) -> str:
    return f"turn {ev.turn}: {clip(safe_str(ev.feedback), DETAIL_CHARS)}"


def reviewed_text(ev: Reviewed) -> str:
    """``turn 2 by tone: revise — Shorter, please.``: what a review marker says (``rejected``: no revision left)."""
    verdict = "rejected (no revision left)" if ev.verdict == "rejected" else ev.verdict
    said = f" — {ev.feedback}" if ev.feedback else ""
    why = f": {ev.error}" if ev.error is not None else ""
    spent = f" ({ev.usage.total_tokens:,} tokens)" if ev.usage.total_tokens else ""
    return f"turn {ev.turn} by {clip(ev.critic, 80)}{spent}: {verdict}{clip(said + why, DETAIL_CHARS)}"


def _rejected_text(ev: OutputRejected) -> str:
    return f"turn {ev.turn}: {clip(safe_str(ev.errors), DETAIL_CHARS)}"


def _budget_text(ev: BudgetStopped) -> str:
    limit, spent = budget_figure(ev.budget, ev.limit), budget_figure(ev.budget, ev.spent)
    where = "refused before any model call" if ev.refused else f"stopped before #{ev.step}"
    return f"{ev.budget} ({ev.scope}) {where}: spent {spent} of {limit}"


def compacted_text(ev: Compacted) -> str:
    """``before #step: 7,900 → 2,100 tokens (summary by sim/x, 40 messages)``: what a compaction marker says."""
    how = {"summary": f"summary by {ev.summary_model}", "dropped": "oldest turns dropped", "custom": "custom"}
    why = f"; the summary failed: {ev.error}" if ev.error is not None else ""
    return (
        f"before #{ev.step}: {ev.tokens_before:,} → {ev.tokens_after:,} tokens "
        f"({how[ev.method]}, {plural(ev.messages_compacted, 'message')}){clip(why, DETAIL_CHARS)}"
    )


MARKER_TEXT: dict[type, Callable[[Any], str]] = {
    Failover: failover_text,
    MessagesRewritten: _rewritten_text,
    RevisionRequested: _revision_text,
    OutputRejected: _rejected_text,
    BudgetStopped: _budget_text,
    Compacted: compacted_text,
    Reviewed: reviewed_text,
}
"""What each marker says, by its event type (a test checks every marker kind of the fold has one)."""


def budget_figure(name: str, value: float) -> str:
    """One budget figure as text: ``$0.0040``, ``1,200 tokens``, ``3 steps``, ``12.0 s``."""
    if name == "max_usd":
        return UNKNOWN_TEXT if math.isnan(value) else f"${value:.4f}"
    if name == "max_tokens":
        return f"{int(value):,} tokens"
    if name == "max_steps":
        return plural(int(value), "step")
    return f"{value:.1f} s"


def budget_text(left: dict[str, float]) -> str:
    """The budget left, as the header shows it: ``budget left: $0.0040 · 1,200 tokens · 3 steps``."""
    order = ("max_usd", "max_tokens", "max_steps", "max_runtime_s")
    return "budget left: " + " · ".join(budget_figure(n, left[n]) for n in order if n in left) if left else ""


def _step_view(item: ModelCallItem | ToolCallItem, t0: datetime) -> StepView:
    start = (item.started_at - t0).total_seconds()
    if isinstance(item, ModelCallItem):
        view = StepView(
            item.step,
            item.turn,
            "model",
            item.model,
            start,
            duration_s=item.latency_s,
            ok=item.ok,
            tokens_in=item.usage.prompt_tokens,
            tokens_out=item.usage.completion_tokens,
            cached=item.cached,
            details=[("sent", _messages_text(item.sent))],
            error=item.error,
        )
        if item.message is not None:
            view.details.append(("received", _messages_text([item.message])))
        return view
    view = StepView(
        item.step,
        item.turn,
        "tool",
        item.name,
        start,
        duration_s=item.duration_s,
        ok=item.ok,
        details=[("arguments", pretty_text(item.arguments))],
        error=item.error,
    )
    if item.result is not None and (item.error is None or item.result != f"Error: {item.error}"):
        view.details.append(("result", clip(safe_str(item.result))))  # else the error block says it
    if (d := item.decision) is not None:
        view.decision = f"{d.decision} ({d.by}{', ' + d.rule if d.rule else ''})"
    if item.subrun is not None:
        view.subrun = subrun_summary(item.subrun)
    return view


@functools.cache
def _event_adapter() -> TypeAdapter[Event]:
    return TypeAdapter(Event)


def subrun_summary(ev: SubRunFinished) -> RunSummary | None:
    """The summary of the sub-run a ``SubRunFinished`` holds (its log, as it ended); None if unreadable."""
    adapter = _event_adapter()
    try:
        events = [adapter.validate_python(e) for e in ev.events]
    except ValidationError:
        return None
    return summarize(events, run_id=ev.sub_run_id, agent=ev.sub_agent)


def marker_view(marker: Marker, t0: datetime) -> MarkerView:
    """The view of one marker: its kind and what it says."""
    ev = marker.event
    detail = clip(safe_str(ev.summary)) if isinstance(ev, Compacted) and ev.summary else None
    return MarkerView(marker.marker_kind, MARKER_TEXT[type(ev)](ev), (ev.ts - t0).total_seconds(), marker.step, detail)


def item_view(item: TimelineItem, t0: datetime) -> StepView | MarkerView:
    """The view of one timeline item (``t0``: the run's start, the axis origin)."""
    return marker_view(item, t0) if isinstance(item, Marker) else _step_view(item, t0)


class SummaryFold:
    """``RunFold`` (the one fold of the log) with the views' projection on top: ``summary()``, ``step_view()``.

    The terminal printer keeps one per run, fed one event at a time.
    """

    def __init__(self, *, run_id: str = "?", agent: str = "?", model: str = ""):
        self.run = RunFold(run_id=run_id, agent=agent, model=model)

    def add(self, ev: Event) -> TimelineItem | None:
        """Fold one event in; returns the timeline item it added or changed, if any."""
        return self.run.add(ev)

    def step_view(self, step: int) -> StepView | None:
        """The view of one step, or None if no such step started."""
        run = self.run
        item = run.calls.get(step)
        return _step_view(item, run.started_at) if item is not None and run.started_at is not None else None

    def summary(self, now: datetime | None = None, partial: dict[int, str] | None = None) -> RunSummary:
        """The ``RunSummary`` of the events folded so far (``partial``: text streamed into open steps)."""
        run = self.run
        if run.prompt is None or run.started_at is None:  # no RunStarted yet: queued
            return RunSummary(
                run_id=run.run_id,
                agent=run.agent,
                status=RunStatus.QUEUED,
                models=[run.start_model] if run.start_model else [],
            )
        now = now or utcnow()
        partial = partial or {}
        timeline = [item_view(item, run.started_at) for item in run.timeline]
        for view in timeline:  # the streamed text is transient: the fold keeps only events
            if isinstance(view, StepView) and view.step in partial and view.ok is None:
                view.details.append(("receiving", clip(safe_str(partial[view.step]))))
        steps = sorted((v for v in timeline if isinstance(v, StepView)), key=lambda v: v.step)
        return RunSummary(
            run_id=run.run_id,
            agent=run.agent,
            status=run.status,
            models=_finished_models(run) or [run.start_model],
            elapsed_s=run.elapsed_s(None if run.finished else now),
            steps=steps,
            prompt_tokens=run.usage.prompt_tokens,
            completion_tokens=run.usage.completion_tokens,
            cost_usd=run.usage.cost_usd,
            error=run.error,
            output=run.output,
            pending=list(run.pending.values()),
            failovers=[failover_text(f) for f in run.failovers],
            timeline=timeline,
            budget_left=run.budget_left(None if run.finished else now),
            budget=run.budget,
        )


def _finished_models(run: RunFold) -> list[str]:
    """The models of finished calls, in order first seen (the header's model list)."""
    return list(dict.fromkeys(i.model for i in run.timeline if isinstance(i, ModelCallItem) and i.ok is not None))


def summarize(
    events: list[Event],
    now: datetime | None = None,
    *,
    run_id: str = "?",
    agent: str = "?",
    model: str = "",
    partial: dict[int, str] | None = None,
) -> RunSummary:
    """Fold a (possibly unfinished) event log into a ``RunSummary``.

    ``run_id``, ``agent`` and ``model`` name a run that has not started yet (no events);
    ``partial`` is text streamed so far into model steps still in flight.
    """
    fold = SummaryFold(run_id=run_id, agent=agent, model=model)
    for ev in events:
        fold.add(ev)
    return fold.summary(now, partial)
