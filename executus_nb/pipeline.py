"""``Pipeline``: phases run in order, each given the previous phase's output; one run-like handle for all.

A phase is an ``Agent`` (run on the executor as a run of its own, whose ``parent_run_id`` is
the pipeline's) or a plain function, sync or async, of the previous output.  ``Phase(step,
input=fn)`` shapes what a phase is given: ``fn(previous_output)``.  The pipeline's own log
records its start, each agent phase's ending (``SubRunFinished``, so its usage rolls up) and its
ending, so a ``PipelineRun`` is a run to everything that reads one: ``wait()``, ``await``,
``cancel()``, the fan-out grid (a pipeline can be a fan-out's column), the frames.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from executus_nb.agent import Agent
from executus_nb.errors import UserError
from executus_nb.lane import Lanes
from executus_nb.run.approval import Approvals
from executus_nb.run.background import background_loop
from executus_nb.run.conversation import Continuation, check_prompt
from executus_nb.run.handle import Run
from executus_nb.run.log import RunLog
from executus_nb.run.loop import prompt_text, tool_output_text
from executus_nb.run.outcome import CANCELLED, ending
from executus_nb.run.subrun import await_subrun
from executus_nb.types.budget import Budget
from executus_nb.types.events import ErrorInfo, RunFinished, RunStarted
from executus_nb.types.fmt import numbered
from executus_nb.types.fold import fold
from executus_nb.types.status import RunStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Phase", "Pipeline", "PipelineRun"]

PHASE_STOP_WAIT_S = 5.0  # a backstop: a cancelled phase run ends within its own grace (0.4 s)


class PhaseExecutor(Protocol):
    """What a pipeline needs of its executor (an ``Executor`` is one): ``run()`` for an agent phase."""

    def run(
        self,
        agent: Agent,
        prompt: str | list[dict[str, Any]],
        *,
        history: Any = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        within: Sequence[tuple[Lanes, str, str]] = (),
    ) -> Run: ...


@dataclass(frozen=True)
class Phase:
    """One phase: ``step`` (an ``Agent``, or a function of the previous output, sync or async), and
    ``input``, a function that shapes the previous output into what ``step`` is given (default: as is;
    an agent is given text, so structured output goes to it as JSON).  ``name`` labels it in the views."""

    step: Agent | Callable[[Any], Any]
    input: Callable[[Any], Any] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.step, Agent) or callable(self.step)):
            raise UserError(f"a pipeline phase is an Agent or a function, not {type(self.step).__name__}")
        if self.input is not None and not callable(self.input):
            raise UserError(f"Phase(input=...) is a function of the previous output, not {type(self.input).__name__}")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.step, Agent):
            return self.step.name
        return str(getattr(self.step, "__name__", "function"))


@dataclass
class PhaseRecord:
    """What one phase did: its number and name, its run (an agent phase's), output, status and error."""

    index: int
    name: str
    phase: Phase
    run: Run | None = None
    status: RunStatus = RunStatus.QUEUED
    output: Any = None
    error: ErrorInfo | None = None


class Pipeline:
    """Phases run in order: ``Pipeline([draft_agent, Phase(critic, input=lambda d: f"Critique: {d}"), fn])``.

    ``executor.run(pipeline, input)`` returns a ``PipelineRun``.  Each phase is given the previous
    phase's output (the first, the input), shaped by its ``Phase(input=...)`` function if it has one.
    A phase that fails, is cancelled or stops ends the pipeline with its status and error.
    """

    def __init__(self, phases: Iterable[Phase | Agent | Callable[[Any], Any]], *, name: str = "pipeline"):
        items = [p if isinstance(p, Phase) else Phase(p) for p in phases]
        if not items:
            raise UserError("a Pipeline needs at least one phase (an Agent, a function or a Phase)")
        if not isinstance(name, str) or not name:
            raise UserError("Pipeline(name=...) is a non-empty str")
        self.phases: tuple[Phase, ...] = tuple(items)
        self.name = name
        self.labels = numbered([p.label for p in items])

    def start(
        self,
        executor: PhaseExecutor,
        prompt: Any,
        *,
        run_id: str | None = None,
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        within: Sequence[tuple[Lanes, str, str]] = (),
        history: Any = None,
        **per_run: Any,
    ) -> PipelineRun:
        """Start the pipeline on ``executor`` (``executor.run(pipeline, input)`` calls this); the handle at once.

        ``per_run`` (``deps``, ``model``/``tier``, ``max_steps``, ``budget``, ``hooks``) apply to each agent
        phase's run; ``within``, ``lane`` and ``tags`` too (a fan-out's bounds); ``history`` to the first phase.
        """
        if isinstance(prompt, str) or isinstance(prompt, list):
            check_prompt(prompt)
        run = PipelineRun(self, executor, prompt, run_id=run_id, owner=owner, tags=tuple(tags))
        run.options = {"lane": lane, "within": within, "tags": tuple(tags), "owner": owner, **per_run}
        run.history = history
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = background_loop()
        run._schedule(loop)
        return run

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}: {' → '.join(self.labels)})"


class PipelineRun(Run):
    """A started pipeline: ``wait()``, ``await``, ``cancel()``, ``result.output`` (the last phase's), ``status``,
    ``runs`` (the agent phases' runs, in order), ``phases`` (every phase's record), its view, and
    ``steps_df()`` / ``runs_df()`` / ``usage_df()`` across phases with a ``phase`` column.

    Its ``agent`` is an ``Agent`` named after the pipeline (what tables and the grid read of a run's agent).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        executor: PhaseExecutor,
        prompt: Any,
        *,
        run_id: str | None = None,
        owner: str | None = None,
        tags: tuple[str, ...] = (),
    ):
        import uuid

        self.pipeline = pipeline
        self.executor = executor
        self.phases = [
            PhaseRecord(i + 1, label, p)
            for i, (p, label) in enumerate(zip(pipeline.phases, pipeline.labels, strict=True))
        ]
        self.options: dict[str, Any] = {}  # each agent phase's run options
        self.history: Any = None  # what the first phase continues
        self._listeners: list[Callable[[PhaseRecord], None]] = []
        run_id = run_id or uuid.uuid4().hex[:12]
        log = RunLog(run_id, pipeline.name, owner, tags)
        descriptor = Agent(name=pipeline.name, max_steps=len(pipeline.phases))
        super().__init__(
            run_id, descriptor, prompt, " → ".join(pipeline.labels), log, _drive, Approvals(interactive=lambda: False)
        )

    @property
    def runs(self) -> list[Run]:
        """The agent phases' runs so far, in phase order."""
        return [p.run for p in self.phases if p.run is not None]

    def subscribe_phases(self, notify: Callable[[PhaseRecord], None]) -> Callable[[], None]:
        """Call ``notify(phase)`` whenever a phase starts or ends (the view adds each phase's RunView so)."""
        self._listeners.append(notify)
        return lambda: self._listeners.remove(notify) if notify in self._listeners else None

    def changed(self, phase: PhaseRecord) -> None:
        """Tell the phase listeners that ``phase`` started or ended."""
        for notify in list(self._listeners):
            notify(phase)

    # -- tables ----------------------------------------------------------------------
    def steps_df(self) -> pd.DataFrame:
        """Every step of every agent phase, with a ``phase`` column first (see ``frames.steps_df``)."""
        from executus_nb.frames import steps_df

        return self._per_phase(lambda run: steps_df(run.log.events))

    def runs_df(self) -> pd.DataFrame:
        """One row per agent phase's run, with a ``phase`` column first (see ``frames.runs_df``)."""
        from executus_nb.frames import runs_df

        return self._per_phase(lambda run: runs_df([run]))

    def usage_df(self) -> pd.DataFrame:
        """Usage per phase and model, with a ``phase`` column first (see ``frames.usage_df``)."""
        from executus_nb.frames import usage_df

        return self._per_phase(lambda run: usage_df(run.log.events))

    def tool_calls_df(self) -> pd.DataFrame:
        """Every tool call of every agent phase, with a ``phase`` column first (see ``frames.tool_calls_df``)."""
        from executus_nb.frames import tool_calls_df

        return self._per_phase(lambda run: tool_calls_df(run.log.events))

    def _per_phase(self, table: Callable[[Run], pd.DataFrame]) -> pd.DataFrame:
        import pandas as pd

        with_runs = [p for p in self.phases if p.run is not None]
        empty = table(_NO_RUN) if not with_runs else None
        frames = []
        for phase in with_runs:
            df = table(phase.run)  # type: ignore[arg-type]
            df.insert(0, "phase", phase.name)
            frames.append(df)
        if not frames:
            assert empty is not None
            empty.insert(0, "phase", pd.Series([], dtype=object))
            return empty
        return pd.concat(frames, ignore_index=True)

    # -- display ---------------------------------------------------------------------
    def view(self) -> Any:
        """The pipeline's view: the phases in sequence, each with its RunView (created once; imports ipywidgets)."""
        if self._view is None:
            from executus_nb.nb.pipeline_view import PipelineView

            self._view = PipelineView(self)
        return self._view

    def __repr__(self) -> str:
        done = sum(p.status.is_final for p in self.phases)
        return (
            f"PipelineRun(run_id={self.run_id!r}, pipeline={self.pipeline.name!r}, status={self.status.value}, "
            f"phases={done}/{len(self.phases)})"
        )


class _NoRun:
    """The tables of a pipeline with no agent phase run yet are the frames' empty tables."""

    class log:  # noqa: N801 — shaped like a run's log
        events: list[Any] = []

    run_id, model, result = "", "", None
    agent = Agent(name="-")
    status = RunStatus.QUEUED


_NO_RUN: Any = _NoRun()


async def _call(fn: Callable[[Any], Any], value: Any) -> Any:
    """``fn(value)``: awaited if async, in a worker thread if sync (the loop, and every other run, go on)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(value)
    result = await asyncio.to_thread(fn, value)
    if inspect.isawaitable(result):
        return await result
    return result


async def _drive(run: Run) -> None:
    """The pipeline's body (``Run``'s): each phase in turn, then ``RunFinished`` with the last output or the
    ending of the phase that stopped it."""
    assert isinstance(run, PipelineRun)
    log = run.log
    log.emit(
        RunStarted,
        prompt=prompt_text(run.prompt) if isinstance(run.prompt, (str, list)) else tool_output_text(run.prompt),
        model=run.model,
        messages=[{"role": "user", "content": run.prompt}] if isinstance(run.prompt, (str, list)) else [],
        tools=[],
        max_steps=len(run.phases),
    )
    value: Any = run.prompt
    status, error = RunStatus.SUCCEEDED, None
    try:
        for phase in run.phases:
            value, status, error = await _run_phase(run, phase, value)
            if status is not RunStatus.SUCCEEDED:
                break
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 — mapped like a run's ending
        status, error = ending(exc)
    usage = fold(log.events).usage
    done = sum(p.status.is_final for p in run.phases)
    log.emit(
        RunFinished,
        status=status,
        output=value if status is RunStatus.SUCCEEDED else None,
        error=error,
        usage=usage,
        steps=done,
    )


async def _run_phase(run: PipelineRun, phase: PhaseRecord, previous: Any) -> tuple[Any, RunStatus, ErrorInfo | None]:
    """One phase: its output, status and error (a failing mapping or function is the phase's failure)."""
    spec = phase.phase
    phase.status = RunStatus.RUNNING
    run.changed(phase)
    try:
        given = await _call(spec.input, previous) if spec.input is not None else previous
        if not isinstance(spec.step, Agent):
            phase.output = await _call(spec.step, given)
            phase.status = RunStatus.SUCCEEDED
            return phase.output, phase.status, None
        prompt = given if isinstance(given, (str, list)) else tool_output_text(given)
        history = run.history if phase.index == 1 else None
        phase.run = run.executor.run(
            spec.step,
            prompt,
            history=history if history is not None else Continuation(parent_run_id=run.run_id),
            **run.options,
        )
        run.changed(phase)
        try:
            # a phase run's cancel is hard-bounded (its grace), so the pipeline can wait for its ending
            result = await await_subrun(run.log, phase.run, step=phase.index, stop_wait_s=PHASE_STOP_WAIT_S)
        except asyncio.CancelledError:
            phase.status, phase.error = RunStatus.CANCELLED, ErrorInfo(type="RunCancelled", message=CANCELLED)
            raise
        phase.status, phase.output, phase.error = result.status, result.output, result.error
        if not result.ok:
            error = result.error or ErrorInfo(type="RunError", message=f"the phase ended {result.status.value}")
            why = ErrorInfo(type=error.type, message=f"phase {phase.index} ({phase.name}): {error.message}")
            return None, result.status, why
        return result.output, result.status, None
    except asyncio.CancelledError:
        if phase.status is RunStatus.RUNNING:
            phase.status = RunStatus.CANCELLED
        raise
    except Exception as exc:  # noqa: BLE001 — a mapping or function phase that raised: the phase failed
        phase.status, phase.error = RunStatus.FAILED, ErrorInfo(type=type(exc).__name__, message=str(exc) or "")
        why = ErrorInfo(type=phase.error.type, message=f"phase {phase.index} ({phase.name}): {phase.error.message}")
        return None, RunStatus.FAILED, why
    finally:
        run.changed(phase)
