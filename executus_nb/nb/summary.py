"""A view-ready summary of a run's event log: header figures and one entry per step."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
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
        return "unknown" if math.isnan(self.cost_usd) else f"${self.cost_usd:.6f}"


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return value
    return json.dumps(value, indent=1, ensure_ascii=False, default=str)


def _messages_text(messages: list[dict[str, Any]]) -> str:
    lines = []
    for m in messages:
        content = m.get("content")
        body = content if isinstance(content, str) else _pretty(content) if content else ""
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function", {})
            body += f"\n→ {fn.get('name')}({fn.get('arguments')})"
        lines.append(f"[{m.get('role')}] {body.strip()}")
    return "\n".join(lines)


def summarize(events: list[Any], now: datetime | None = None, *, run_id: str = "?", agent: str = "?",
              model: str = "", partial: dict[int, str] | None = None) -> RunSummary:
    """Fold a (possibly unfinished) event log into a ``RunSummary``.

    ``run_id``, ``agent`` and ``model`` name a run that has not started yet (no events);
    ``partial`` is text streamed so far into model steps still in flight.
    """
    start = next((ev for ev in events if isinstance(ev, RunStarted)), None)
    if start is None:
        return RunSummary(run_id=run_id, agent=agent, status=RunStatus.QUEUED, models=[model] if model else [])
    summary = RunSummary(run_id=start.run_id, agent=start.agent, status=RunStatus.RUNNING)
    t0 = start.ts
    steps: dict[int, StepView] = {}
    sent: list[dict[str, Any]] = list(start.messages)
    pending: dict[str, ApprovalRequested] = {}
    for ev in events:
        if isinstance(ev, ModelCallStarted):
            steps[ev.step] = StepView(ev.step, ev.turn, "model", ev.model, (ev.ts - t0).total_seconds(),
                                      details=[("sent", _messages_text(sent))])
            sent = []
        elif isinstance(ev, ModelCallFinished) and ev.step in steps:
            s = steps[ev.step]
            s.duration_s, s.ok, s.name, s.cached, s.error = ev.latency_s, ev.error is None, ev.model, ev.cached, ev.error
            s.tokens_in, s.tokens_out = ev.usage.prompt_tokens, ev.usage.completion_tokens
            if ev.message is not None:
                s.details.append(("received", _messages_text([ev.message])))
            if ev.error is None:
                summary.prompt_tokens += ev.usage.prompt_tokens
                summary.completion_tokens += ev.usage.completion_tokens
                summary.cost_usd += ev.usage.cost_usd
            if ev.model not in summary.models:
                summary.models.append(ev.model)
        elif isinstance(ev, ToolCallStarted):
            steps[ev.step] = StepView(ev.step, ev.turn, "tool", ev.name, (ev.ts - t0).total_seconds(),
                                      details=[("arguments", _pretty(ev.arguments))])
        elif isinstance(ev, ToolCallFinished) and ev.step in steps:
            s = steps[ev.step]
            s.duration_s, s.ok, s.error = ev.duration_s, ev.error is None, ev.error
            if ev.error is None or ev.result != f"Error: {ev.error}":  # else the error block says it
                s.details.append(("result", ev.result))
            sent.append({"role": "tool", "content": ev.result})
        elif isinstance(ev, ApprovalRequested):
            pending[ev.call_id] = ev
        elif isinstance(ev, ApprovalResolved):
            pending.pop(ev.call_id, None)
            if ev.step in steps:
                steps[ev.step].decision = f"{ev.decision} ({ev.by}{', ' + ev.rule if ev.rule else ''})"
        elif isinstance(ev, Failover):
            code = f"{ev.error.status_code} " if ev.error.status_code else ""
            summary.failovers.append(f"#{ev.step} {ev.from_model} → {code}{ev.error.type} → {ev.to_model}")
        elif isinstance(ev, RunFinished):
            summary.status, summary.error, summary.output = ev.status, ev.error, ev.output
    end = events[-1].ts if summary.status.is_final else (now or utcnow())
    summary.elapsed_s = max(0.0, (end - t0).total_seconds())
    for step, text in (partial or {}).items():
        if step in steps and steps[step].ok is None:
            steps[step].details.append(("receiving", text))
    summary.steps = [steps[k] for k in sorted(steps)]
    summary.pending = list(pending.values())
    if not summary.models:
        summary.models = [start.model]
    return summary
