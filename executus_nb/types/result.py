"""``RunResult`` and ``Step``: the finished run, projected from its event log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from executus_nb.types.events import (
    ErrorInfo,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from executus_nb.types.fmt import UNKNOWN_TEXT, clip, money, safe_repr, safe_str
from executus_nb.types.status import RunStatus
from executus_nb.types.usage import Usage


class Step(BaseModel):
    """One model call or one tool call of a run, with its timing and outcome."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    agent: str
    step: int
    turn: int
    kind: Literal["model", "tool"]
    name: str
    call_id: str | None = None
    provider_call_id: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float | None = None
    ok: bool | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    arguments: str | None = None
    result: str | None = None
    error_type: str | None = None
    error_message: str | None = None


def build_steps(events: Sequence[Any]) -> list[Step]:
    """Pair the started/finished events of one or more runs' logs into steps.

    Steps are keyed by (run, step): the events of several runs may be passed together.
    Runs keep the order they first appear in; within a run, steps are in step order.
    """
    steps: dict[tuple[str, int], Step] = {}
    run_order: dict[str, int] = {}
    for ev in events:
        key = (ev.run_id, getattr(ev, "step", 0))
        run_order.setdefault(ev.run_id, len(run_order))
        if isinstance(ev, ModelCallStarted):
            steps[key] = Step(
                run_id=ev.run_id, agent=ev.agent, step=ev.step, turn=ev.turn,
                kind="model", name=ev.model, started_at=ev.ts,
            )
        elif isinstance(ev, ToolCallStarted):
            steps[key] = Step(
                run_id=ev.run_id, agent=ev.agent, step=ev.step, turn=ev.turn, kind="tool",
                name=ev.name, call_id=ev.call_id, provider_call_id=ev.provider_call_id, started_at=ev.ts,
                arguments=ev.arguments,
            )
        elif isinstance(ev, ModelCallFinished) and key in steps:
            steps[key] = steps[key].model_copy(update=dict(
                name=ev.model, finished_at=ev.ts, duration_s=ev.latency_s, ok=ev.error is None,
                prompt_tokens=ev.usage.prompt_tokens, completion_tokens=ev.usage.completion_tokens,
                total_tokens=ev.usage.total_tokens, cost_usd=ev.usage.cost_usd, cached=ev.cached,
                error_type=ev.error.type if ev.error else None,
                error_message=ev.error.message if ev.error else None,
            ))
        elif isinstance(ev, ToolCallFinished) and key in steps:
            steps[key] = steps[key].model_copy(update=dict(
                finished_at=ev.ts, duration_s=ev.duration_s, ok=ev.error is None, result=ev.result,
                error_type=ev.error.type if ev.error else None,
                error_message=ev.error.message if ev.error else None,
            ))
    return [steps[k] for k in sorted(steps, key=lambda k: (run_order[k[0]], k[1]))]


def models_tried(events: Sequence[Any]) -> list[str]:
    """Every model a run's calls went to, in the order first tried (a failed primary, then its backup)."""
    return list(dict.fromkeys(ev.model for ev in events if isinstance(ev, ModelCallStarted)))


def answering_model(events: Sequence[Any], default: str) -> str:
    """The model that produced a run's final answer; for a run without one, the last model tried.

    ``default`` (the run's first model) when no call was made at all.
    """
    end = next((ev for ev in reversed(events) if isinstance(ev, RunFinished)), None)
    if end is not None and end.status is RunStatus.SUCCEEDED:
        served = next((ev for ev in reversed(events) if isinstance(ev, ModelCallFinished) and ev.error is None), None)
        if served is not None:
            return served.model
    tried = next((ev for ev in reversed(events) if isinstance(ev, ModelCallStarted)), None)
    return tried.model if tried is not None else default


def sum_usage(events: Sequence[Any]) -> Usage:
    """Total usage of every finished model call in a log."""
    total = Usage()
    for ev in events:
        if isinstance(ev, ModelCallFinished) and ev.error is None:
            total = total + ev.usage
    return total


class RunResult(BaseModel):
    """The outcome of a finished run: status, output, steps, usage and error.

    ``model`` is the model that produced the final answer (for a run without one, the last
    model tried); ``models`` every model tried, in order, so a failover shows as two.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    agent: str
    model: str
    models: list[str] = []
    status: RunStatus
    output: Any = None
    steps: list[Step] = []
    usage: Usage = Usage()
    error: ErrorInfo | None = None
    started_at: datetime
    finished_at: datetime

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.status is RunStatus.SUCCEEDED

    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def from_events(cls, events: Sequence[Any]) -> RunResult:
        """Project a finished run's log (``RunStarted`` … ``RunFinished``) into a result."""
        start = next(ev for ev in events if isinstance(ev, RunStarted))
        end = next(ev for ev in reversed(events) if isinstance(ev, RunFinished))
        return cls(
            run_id=start.run_id, agent=start.agent, model=answering_model(events, start.model),
            models=models_tried(events), status=end.status,
            output=end.output, steps=build_steps(events), usage=end.usage, error=end.error,
            started_at=start.ts, finished_at=end.ts,
        )

    def __repr__(self) -> str:
        # never raises and stays one short line, whatever the output holds (hostile, deep, huge)
        text = (
            f"RunResult(run_id={self.run_id!r}, agent={clip(self.agent, 200)!r}, status={self.status.value}, "
            f"steps={len(self.steps)}, tokens={self.usage.total_tokens}, "
            f"cost={money(self.usage.cost_usd, unknown=UNKNOWN_TEXT)}"
        )
        if self.error is not None:
            text += f", error={clip(safe_str(self.error), 300)!r}"
        else:
            text += f", output={_short(self.output)!r}"
        return text + ")"

    __str__ = __repr__


def _short(value: Any, limit: int = 80) -> str:
    text = safe_str(value) if isinstance(value, str) else safe_repr(value, limit + 20)
    return text if len(text) <= limit else text[: limit - 1] + "…"
