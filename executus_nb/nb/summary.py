"""A view-ready summary of a run's event log: header figures and one entry per step."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    Failover,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    utcnow,
)
from executus_nb.types.fmt import DETAIL_CHARS, UNKNOWN_TEXT, clip, money, plural, pretty_text, safe_str, show
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

    @property
    def state(self) -> str:
        if self.ok is None:
            return "running"
        if self.ok:
            return "ok"
        return "cancelled" if self.error is not None and self.error.type == "RunCancelled" else "failed"


@dataclass
class RunSummary:
    """The header of a run view: who, which models, where it stands, what it cost."""

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


class SummaryFold:
    """The fold behind ``summarize``, fed one event at a time (O(1) work per event, bar its text).

    The terminal printer keeps one per run; ``summary()`` gives the ``RunSummary`` so far.
    """

    def __init__(self, *, run_id: str = "?", agent: str = "?", model: str = ""):
        self._default = (run_id, agent, model)
        self._run: RunSummary | None = None
        self._t0: datetime | None = None
        self._last: datetime | None = None
        self._start_model = model
        self.steps: dict[int, StepView] = {}
        self._sent: list[Any] = []
        self._pending: dict[str, ApprovalRequested] = {}

    def add(self, ev: Any) -> StepView | None:
        """Fold one event in; returns the step it started or changed, if any."""
        if isinstance(ev, RunStarted):
            if self._run is None:
                self._run = RunSummary(run_id=ev.run_id, agent=ev.agent, status=RunStatus.RUNNING)
                self._t0, self._start_model, self._sent = ev.ts, ev.model, list(ev.messages)
            self._last = ev.ts
            return None
        run = self._run
        if run is None or self._t0 is None:
            return None
        self._last = ev.ts
        step = self.steps.get(getattr(ev, "step", -1))
        if isinstance(ev, ModelCallStarted):
            step = self.steps[ev.step] = StepView(ev.step, ev.turn, "model", ev.model,
                                                  (ev.ts - self._t0).total_seconds(),
                                                  details=[("sent", _messages_text(self._sent))])
            self._sent = []
        elif isinstance(ev, ModelCallFinished) and step is not None:
            s = step
            s.duration_s, s.ok, s.name, s.cached = ev.latency_s, ev.error is None, ev.model, ev.cached
            s.error = ev.error
            s.tokens_in, s.tokens_out = ev.usage.prompt_tokens, ev.usage.completion_tokens
            if ev.message is not None:
                s.details.append(("received", _messages_text([ev.message])))
            if ev.error is None:
                run.prompt_tokens += ev.usage.prompt_tokens
                run.completion_tokens += ev.usage.completion_tokens
                run.cost_usd += ev.usage.cost_usd
            if ev.model not in run.models:
                run.models.append(ev.model)
        elif isinstance(ev, ToolCallStarted):
            step = self.steps[ev.step] = StepView(ev.step, ev.turn, "tool", ev.name,
                                                  (ev.ts - self._t0).total_seconds(),
                                                  details=[("arguments", pretty_text(ev.arguments))])
        elif isinstance(ev, ToolCallFinished) and step is not None:
            s = step
            s.duration_s, s.ok, s.error = ev.duration_s, ev.error is None, ev.error
            if ev.error is None or ev.result != f"Error: {ev.error}":  # else the error block says it
                s.details.append(("result", clip(safe_str(ev.result))))
            self._sent.append({"role": "tool", "content": ev.result})
        elif isinstance(ev, ApprovalRequested):
            self._pending[ev.call_id] = ev
        elif isinstance(ev, ApprovalResolved):
            self._pending.pop(ev.call_id, None)
            if step is not None:
                step.decision = f"{ev.decision} ({ev.by}{', ' + ev.rule if ev.rule else ''})"
        elif isinstance(ev, Failover):
            code = f"{ev.error.status_code} " if ev.error.status_code else ""
            run.failovers.append(f"#{ev.step} {ev.from_model} → {code}{ev.error.type} → {ev.to_model}")
        elif isinstance(ev, RunFinished):
            run.status, run.error, run.output = ev.status, ev.error, ev.output
        return step if isinstance(ev, (ModelCallStarted, ModelCallFinished, ToolCallStarted, ToolCallFinished,
                                       ApprovalResolved)) else None

    def summary(self, now: datetime | None = None, partial: dict[int, str] | None = None) -> RunSummary:
        """The ``RunSummary`` of the events folded so far (``partial``: text streamed into open steps)."""
        run = self._run
        if run is None or self._t0 is None or self._last is None:
            run_id, agent, model = self._default
            return RunSummary(run_id=run_id, agent=agent, status=RunStatus.QUEUED, models=[model] if model else [])
        end = self._last if run.status.is_final else (now or utcnow())
        partial = partial or {}
        steps = [self.steps[k] for k in sorted(self.steps)]
        if partial:  # copies: the streamed text is transient, the fold keeps only events
            steps = [replace(s, details=[*s.details, ("receiving", clip(safe_str(partial[s.step])))])
                     if s.step in partial and s.ok is None else s for s in steps]
        return replace(run, models=list(run.models) or [self._start_model], steps=steps,
                       elapsed_s=max(0.0, (end - self._t0).total_seconds()),
                       pending=list(self._pending.values()), failovers=list(run.failovers))


def summarize(events: list[Any], now: datetime | None = None, *, run_id: str = "?", agent: str = "?",
              model: str = "", partial: dict[int, str] | None = None) -> RunSummary:
    """Fold a (possibly unfinished) event log into a ``RunSummary``.

    ``run_id``, ``agent`` and ``model`` name a run that has not started yet (no events);
    ``partial`` is text streamed so far into model steps still in flight.
    """
    fold = SummaryFold(run_id=run_id, agent=agent, model=model)
    for ev in events:
        fold.add(ev)
    return fold.summary(now, partial)
