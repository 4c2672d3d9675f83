"""``Fanout``: N prompts × M models (or agents) as one grid of runs, with bounds and retries.

One cell's failure never touches another.  The fan-out's runs queue in their
own lane of the executor, so an interactive run beside it starts as soon as a
slot frees.  ``to_df()`` and ``pivot()`` are projections of the cells' logs.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from executus_nb.agent import Agent
from executus_nb.errors import UserError
from executus_nb.lane import Lanes
from executus_nb.model.spec import ModelSpec
from executus_nb.run.handle import Run
from executus_nb.run.remote import RemoteBody
from executus_nb.scale import Backend, RemoteCells, backend_for, remote_cells
from executus_nb.types.budget import Budget
from executus_nb.types.fmt import numbered
from executus_nb.types.fold import fold
from executus_nb.types.status import RunStatus

if TYPE_CHECKING:
    import pandas as pd

    from executus_nb.pipeline import Pipeline

_ids = itertools.count(1)

PIVOT_VALUES = {"cost": "cost_usd", "tokens": "total_tokens", "latency": "latency_s"}


class CellExecutor(Protocol):
    """What a fan-out needs of its executor (an ``Executor`` is one): its public ``run()``, and its lanes
    (for how long a cell has queued).  Typed so, the fan-out never imports the executor that builds it."""

    @property
    def lanes(self) -> Lanes: ...

    def run(
        self,
        agent: Agent | Pipeline,
        prompt: str,
        *,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        tags: Iterable[str] = (),
        lane: str | None = None,
        within: Sequence[tuple[Lanes, str, str]] = (),
        via: RemoteBody | None = None,
    ) -> Run: ...


@dataclass
class Cell:
    """One prompt × one column of the grid, and the run that fills it."""

    row: int
    col: int
    prompt: str
    label: str
    agent: Agent | Pipeline  # a column is an agent, or a pipeline (its run a PipelineRun)
    run: Run
    attempts: int = 1


class Fanout:
    """A started N×M fan-out: ``.wait()``, ``await``, ``.cancel()``, ``.to_df()``, ``.pivot()``, ``.runs``."""

    def __init__(
        self,
        executor: CellExecutor,
        prompts: list[str],
        labels: list[str],
        agents: list[Agent | Pipeline],
        concurrency: int | None,
        per_key: int | None,
    ):
        self.id = f"fanout-{next(_ids)}"
        self.executor = executor
        self.prompts = prompts
        self.labels = labels
        self.agents = agents
        self.lanes = Lanes(concurrency, {label: per_key for label in labels} if per_key else None)
        self.cells: list[Cell] = []
        self.per_run: dict[str, Any] = {}  # deps, model/tier, max_steps, hooks: given to every cell's run
        self._listeners: list[Callable[[int, Any], None]] = []
        self._view: Any = None
        self.remote: RemoteCells | None = None  # set when the cells run on a backend's workers

    @classmethod
    def start(
        cls,
        executor: CellExecutor,
        agent: Agent | None,
        prompts: Sequence[str],
        *,
        models: Sequence[str | dict[str, Any]] | None,
        agents: Sequence[Agent | Pipeline] | None,
        concurrency: int | None,
        per_key: int | None,
        per_run: dict[str, Any] | None = None,
        backend: Any = "local",
        pools: dict[Any, Backend] | None = None,
    ) -> Fanout:
        """Validate the grid and start every cell's run (on ``backend``'s workers unless ``local``; a backend
        named by string is made once and kept in ``pools``, the executor's)."""
        prompts = list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise UserError("fanout needs a non-empty list of prompt strings")
        if models is not None and agents is not None:
            raise UserError("give fanout models=[...] (with an agent) or agents=[...], not both")
        if models is None and agents is None:
            if agent is None:
                raise UserError("fanout needs an agent (run on its own model), models=[...] with it, or agents=[...]")
            agents = [agent]  # the agent on its own model (or tier): one column
        elif agents is not None and agent is not None:
            raise UserError("fanout(agent, agents=[...]): give the agent in agents=[...], or use models=[...] with it")
        if models is not None:
            if agent is None:
                raise UserError("fanout(models=...) needs the agent to run on each model")
            if not isinstance(agent, Agent):
                raise UserError("fanout(models=...) runs one agent on each model; give pipelines as agents=[...]")
            specs = [ModelSpec.model_validate(m) for m in models]
            columns: list[Agent | Pipeline] = [agent.model_copy(update={"model": spec, "tier": None}) for spec in specs]
            labels = numbered([spec.name for spec in specs])
        else:
            columns = list(agents or [])
            labels = numbered([a.name for a in columns])
        if not columns:
            raise UserError("fanout needs at least one model or agent")
        for bound, name in ((concurrency, "concurrency"), (per_key, "per_key")):
            if bound is not None and bound < 1:
                raise UserError(f"{name} must be at least 1")
        fan = cls(executor, prompts, labels, columns, concurrency, per_key)
        fan.per_run = dict(per_run or {})
        remote = backend_for(backend, pools if pools is not None else {})
        if remote is not None:  # packed once, checked before any cell starts
            fan.remote = remote_cells(remote, executor, columns, fan.per_run)
        for row, prompt in enumerate(prompts):
            for col, column_agent in enumerate(columns):
                fan.cells.append(Cell(row, col, prompt, labels[col], column_agent, fan._launch(row, col)))
        return fan

    def _launch(self, row: int, col: int) -> Run:
        index = row * len(self.labels) + col
        run = self.executor.run(
            self.agents[col],
            self.prompts[row],
            lane=self.id,
            tags=(self.id,),
            within=[(self.lanes, "cells", self.labels[col])],
            via=self.remote.cell(col, self.prompts[row]) if self.remote is not None else None,
            **self.per_run,
        )
        run.log.subscribe(functools.partial(self._changed, index))
        return run

    def _changed(self, index: int, event: Any = None) -> None:
        for notify in list(self._listeners):
            notify(index, event)

    def subscribe(self, notify: Callable[[int, Any], None]) -> Callable[[], None]:
        """Call ``notify(cell_index, event)`` whenever a cell's run records an event
        (``event`` is None when a cell gets a new run, as ``retry_failed`` does)."""
        self._listeners.append(notify)
        return lambda: self._listeners.remove(notify) if notify in self._listeners else None

    # -- handles ---------------------------------------------------------------------
    @property
    def runs(self) -> list[Run]:
        """The cells' runs, row by row (prompt-major)."""
        return [cell.run for cell in self.cells]

    @property
    def backend(self) -> Backend | None:
        """Where the cells run: the ``ProcessPool`` or ``DaskBackend`` (its ``pids``, its ``dashboard_link``), or
        None for this process's loop (``backend="local"``)."""
        return self.remote.backend if self.remote is not None else None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.prompts), len(self.labels)

    @property
    def done(self) -> bool:
        return all(run.done for run in self.runs)

    def counts(self) -> dict[str, int]:
        """How many cells are queued, running, succeeded, cancelled, failed (any other final status) and done."""
        statuses = [run.status for run in self.runs]
        return {
            "queued": sum(s is RunStatus.QUEUED for s in statuses),
            "running": sum(s is RunStatus.RUNNING for s in statuses),
            "succeeded": sum(s is RunStatus.SUCCEEDED for s in statuses),
            "cancelled": sum(s is RunStatus.CANCELLED for s in statuses),
            "failed": sum(s.is_final and s not in (RunStatus.SUCCEEDED, RunStatus.CANCELLED) for s in statuses),
            "done": sum(s.is_final for s in statuses),
            "total": len(statuses),
        }

    def oldest_wait_s(self) -> float:
        """How long (s) the longest-queued cell has waited for a slot, in the fan-out's bounds or the executor's."""
        return max(self.lanes.oldest_wait_s(), self.executor.lanes.oldest_wait_s(self.id))

    def wait(self, timeout: float | None = None) -> Fanout:
        """Block until every cell has finished (works inside Jupyter too); returns the fan-out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in self.runs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            run.wait(left, quiet=True)
        return self

    def __await__(self):
        async def gather() -> Fanout:
            await asyncio.gather(*self.runs)  # a Run is awaitable from any loop
            return self

        return gather().__await__()

    def cancel(self) -> int:
        """Cancel every queued and running cell; returns how many were asked to stop."""
        return sum(run.cancel() for run in self.runs)

    def retry_failed(self) -> Fanout:
        """Run again only the cells that did not succeed (and have finished); returns the fan-out."""
        for index, cell in enumerate(self.cells):
            if cell.run.done and cell.run.status is not RunStatus.SUCCEEDED:
                cell.run = self._launch(cell.row, cell.col)
                cell.attempts += 1
                self._changed(index)
        return self

    # -- tables ----------------------------------------------------------------------
    def to_df(self) -> pd.DataFrame:
        """One row per cell.

        Columns: row, col, prompt, model (the model that produced the final answer; for a run
        without one, the last model tried), models (every model tried, in order), agent, status,
        output, prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_s (wall time
        of the run), steps, attempts, error_type, error_message, run_id.
        """
        import pandas as pd

        rows = []
        for cell in self.cells:
            result = cell.run.result
            usage = result.usage if result else None
            state = fold(cell.run.log.events, model=cell.run.model)
            rows.append(
                {
                    "row": cell.row,
                    "col": cell.col,
                    "prompt": cell.prompt,
                    "model": state.model,
                    "models": state.models_tried,
                    "agent": cell.agent.name,
                    "status": cell.run.status.value,
                    "output": result.output if result else None,
                    "prompt_tokens": usage.prompt_tokens if usage else 0,
                    "completion_tokens": usage.completion_tokens if usage else 0,
                    "total_tokens": usage.total_tokens if usage else 0,
                    "cost_usd": usage.cost_usd if usage else math.nan,
                    "latency_s": result.duration_s if result else math.nan,
                    "steps": len(result.steps) if result else 0,
                    "attempts": cell.attempts,
                    "error_type": result.error.type if result and result.error else None,
                    "error_message": result.error.message if result and result.error else None,
                    "run_id": cell.run.run_id,
                }
            )
        df = pd.DataFrame(rows)
        return df.astype(
            {
                "row": "int64",
                "col": "int64",
                "prompt_tokens": "int64",
                "completion_tokens": "int64",
                "total_tokens": "int64",
                "cost_usd": "float64",
                "latency_s": "float64",
                "steps": "int64",
                "attempts": "int64",
            }
        )

    def pivot(self, value: str = "cost") -> pd.DataFrame:
        """The N×M table of one value (``cost``, ``tokens``, ``latency``, ``status``, ``output``
        or any ``to_df()`` column): rows are prompts, columns models (or agents), in grid order."""
        import pandas as pd

        df = self.to_df()
        column = PIVOT_VALUES.get(value, value)
        if column not in df.columns:
            raise UserError(f"cannot pivot on {value!r}; choose one of {sorted(set(PIVOT_VALUES) | set(df.columns))}")
        table = df.pivot(index="row", columns="col", values=column)
        table.index = pd.Index(self.prompts, name="prompt")
        table.columns = pd.Index(self.labels, name="model")
        return table

    # -- display ---------------------------------------------------------------------
    def view(self) -> Any:
        """The live ``FanoutGrid`` (created once, on first use; imports ipywidgets)."""
        if self._view is None:
            from executus_nb.nb.grid import FanoutGrid

            self._view = FanoutGrid(self)
        return self._view

    def _ipython_display_(self) -> None:
        from executus_nb.nb.display import show

        show(self.view())

    def __repr__(self) -> str:
        c = self.counts()
        n, m = self.shape
        cancelled = f", {c['cancelled']} cancelled" if c["cancelled"] else ""
        return (
            f"Fanout({n}×{m}: {c['done']}/{c['total']} done, {c['running']} running, "
            f"{c['queued']} queued, {c['failed']} failed{cancelled})"
        )
