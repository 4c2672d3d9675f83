"""``RunResult`` and ``Step``: the finished run, projected from its event log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from executus_nb.errors import run_error
from executus_nb.types.events import ErrorInfo, Event
from executus_nb.types.fmt import UNKNOWN_TEXT, clip, money, safe_repr, safe_str
from executus_nb.types.fold import ModelCallItem, RunFold, ToolCallItem, fold, fold_runs
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
    conversation_id: str | None = None
    parent_run_id: str | None = None


def _step(run: RunFold, item: ModelCallItem | ToolCallItem) -> Step:
    error = {
        "error_type": item.error.type if item.error else None,
        "error_message": item.error.message if item.error else None,
    }
    if isinstance(item, ModelCallItem):
        usage = item.usage
        return Step(
            run_id=run.run_id,
            agent=run.agent,
            conversation_id=run.conversation_id,
            parent_run_id=run.parent_run_id,
            step=item.step,
            turn=item.turn,
            kind="model",
            name=item.model,
            started_at=item.started_at,
            finished_at=item.finished_at,
            duration_s=item.latency_s,
            ok=item.ok,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cost_usd=usage.cost_usd,
            cached=item.cached,
            **error,
        )
    return Step(
        run_id=run.run_id,
        agent=run.agent,
        conversation_id=run.conversation_id,
        parent_run_id=run.parent_run_id,
        step=item.step,
        turn=item.turn,
        kind="tool",
        name=item.name,
        call_id=item.call_id,
        provider_call_id=item.provider_call_id,
        started_at=item.started_at,
        finished_at=item.finished_at,
        duration_s=item.duration_s,
        ok=item.ok,
        arguments=item.arguments,
        result=item.result,
        **error,
    )


def steps_of(run: RunFold) -> list[Step]:
    """The steps of one folded run, in step order."""
    return [_step(run, item) for item in run.steps_in_order()]


def build_steps(events: Sequence[Event]) -> list[Step]:
    """The model and tool calls of one or more runs' logs, as steps (through the one fold).

    Runs keep the order they first appear in; within a run, steps are in step order.
    """
    return [step for run in fold_runs(events) for step in steps_of(run)]


def models_tried(events: Sequence[Event]) -> list[str]:
    """Every model a run's calls went to, in the order first tried (a failed primary, then its backup)."""
    return fold(events).models_tried


def answering_model(events: Sequence[Event], default: str) -> str:
    """The model that produced a run's final answer; for a run without one, the last model tried.

    ``default`` (the run's first model) when no call was made at all.
    """
    return fold(events, model=default).model if events else default


def sum_usage(events: Sequence[Event]) -> Usage:
    """Total usage of every successful model call in a log."""
    return fold(events).usage


class RunResult(BaseModel):
    """The outcome of a finished run: status, output, steps, usage and error.

    ``model`` is the model that produced the final answer (for a run without one, the last
    model tried); ``models`` every model tried, in order, so a failover shows as two;
    ``budget`` which budget ended the run (``"max_usd (executor)"``), None if none did;
    ``messages`` the whole conversation (litellm/OpenAI message dicts, secrets redacted), which
    ``executor.run(agent, prompt, history=result)`` continues; ``conversation_id`` and
    ``parent_run_id`` place the run in its conversation.
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
    budget: str | None = None
    messages: list[dict[str, Any]] = []
    conversation_id: str | None = None
    parent_run_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.status is RunStatus.SUCCEEDED

    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
        return (self.finished_at - self.started_at).total_seconds()

    def raise_for_status(self) -> RunResult:
        """This result if the run succeeded; else raise the typed error of how it ended, with its ``run_id``.

        ``MaxStepsExceeded``, ``RunTimeout``, ``RunCancelled``, ``RunStopped`` (a hook's ``StopRun``, a
        budget), or for a failure the error it names (``ModelCallError``, ``OutputValidationError``…).
        """
        if self.ok:
            return self
        error = self.error or ErrorInfo(type="RunError", message=f"the run ended {self.status.value}")
        raise run_error(
            self.status.value,
            error.type,
            error.message,
            run_id=self.run_id,
            provider=error.provider,
            status_code=error.status_code,
        )

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> RunResult:
        """Project a finished run's log (``RunStarted`` … ``RunFinished``) into a result."""
        return cls.from_fold(fold(events))

    @classmethod
    def from_fold(cls, run: RunFold) -> RunResult:
        """The result of a folded, finished run."""
        if run.started_at is None or run.finished_at is None or run.prompt is None:
            raise ValueError("a RunResult needs a finished run's log (RunStarted … RunFinished)")
        return cls(
            run_id=run.run_id,
            agent=run.agent,
            model=run.model,
            models=run.models_tried,
            status=run.status,
            output=run.output,
            steps=steps_of(run),
            usage=run.usage,
            error=run.error,
            started_at=run.started_at,
            finished_at=run.finished_at,
            budget=run.budget,
            messages=run.messages,
            conversation_id=run.conversation_id,
            parent_run_id=run.parent_run_id,
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
