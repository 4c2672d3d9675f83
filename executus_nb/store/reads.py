"""What a store gives back: runs as records the tables read, results and DataFrames, over any ``EventStore``.

Every projection is ``executus_nb.frames`` (and ``RunResult.from_events``) over the stored
events, so a run read back from a store has the columns a live run has.  A store narrows
*which* runs are loaded (``run_ids``: SQL in ``SQLiteStore``); the fold does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from executus_nb.errors import UserError
from executus_nb.types.events import Event, RunStarted
from executus_nb.types.fold import fold
from executus_nb.types.result import RunResult
from executus_nb.types.status import RunStatus

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class StoredAgent:
    """The agent of a stored run as far as its log tells (its name, owner, tags, bounds): tools are code, not stored."""

    name: str
    owner: str | None = None
    tags: tuple[str, ...] = ()
    max_steps: int = 0
    max_runtime_s: float | None = None
    instructions: str = ""
    tools: list[Any] = field(default_factory=list)
    tier: str | None = None
    output_type: Any = None
    hooks: tuple[Any, ...] = ()
    budget: Any = None


@dataclass(frozen=True)
class StoredLog:
    """A stored run's events, in ``seq`` order."""

    events: list[Event]


@dataclass(frozen=True)
class StoredRun:
    """A run read back from a store, shaped as the tables read a run (``RunRecord``)."""

    run_id: str
    agent: StoredAgent
    model: str
    status: RunStatus
    log: StoredLog
    result: RunResult | None

    @classmethod
    def from_events(cls, run_id: str, events: list[Event]) -> StoredRun:
        """The record of one run from its stored events (a run without ``RunFinished`` is ``running``)."""
        state = fold(events)
        started = next((ev for ev in events if isinstance(ev, RunStarted)), None)
        identity = events[0].identity if events else None
        agent = StoredAgent(
            name=identity.agent if identity else "?",
            owner=identity.owner if identity else None,
            tags=identity.tags if identity else (),
            max_steps=started.max_steps if started else 0,
            max_runtime_s=started.max_runtime_s if started else None,
        )
        finished = state.finished and state.prompt is not None
        return cls(
            run_id=run_id,
            agent=agent,
            model=started.model if started else "",
            status=RunStatus(state.status) if state.finished else RunStatus.RUNNING,
            log=StoredLog(events),
            result=RunResult.from_fold(state) if finished else None,
        )


class StoreReads:
    """The reads every store offers, built on its ``run_ids`` and ``events``: one loader to override for speed."""

    run_ids: Callable[..., list[str]]
    events: Callable[[str], list[Event]]

    def events_of(self, run_ids: Sequence[str]) -> dict[str, list[Event]]:
        """The events of each of ``run_ids`` (in that order), each run's in ``seq`` order."""
        return {run_id: self.events(run_id) for run_id in run_ids}

    def runs(
        self, since: datetime | str | None = None, agent: str | None = None, status: RunStatus | str | None = None
    ) -> list[StoredRun]:
        """The stored runs (filtered as ``run_ids``), as records the tables read, oldest start first."""
        ids = self.run_ids(since=since, agent=agent, status=as_status(status))
        return [StoredRun.from_events(run_id, events) for run_id, events in self.events_of(ids).items() if events]

    def result(self, run_id: str) -> RunResult:
        """The ``RunResult`` of a stored, finished run, rebuilt from its events (``UserError`` otherwise)."""
        events = self.events(run_id)
        if not events:
            raise UserError(f"run {run_id!r} is not in {self!r}")
        run = StoredRun.from_events(run_id, events)
        if run.result is None:
            raise UserError(
                f"run {run_id!r} has not finished in {self!r} (status {run.status.value}): "
                "resume it, or read its events with store.events(run_id)"
            )
        return run.result

    def runs_df(
        self, since: datetime | str | None = None, agent: str | None = None, status: RunStatus | str | None = None
    ) -> pd.DataFrame:
        """One row per stored run started at or after ``since``, of ``agent``, with ``status``
        (the columns of ``executor.runs_df()``, see ``executus_nb.frames.runs_df``)."""
        from executus_nb.frames import runs_df

        return runs_df(self.runs(since=since, agent=agent, status=status))

    def steps_df(self, run_id: str | None = None) -> pd.DataFrame:
        """Every step of one stored run (or of all of them), as ``executor.steps_df()``."""
        from executus_nb.frames import steps_df

        return steps_df(self._events(run_id))

    def tool_calls_df(self, run_id: str | None = None) -> pd.DataFrame:
        """Every tool call of one stored run (or of all of them), as ``run.tool_calls_df()``."""
        from executus_nb.frames import tool_calls_df

        return tool_calls_df(self._events(run_id))

    def usage_df(
        self, since: datetime | str | None = None, by: Sequence[str] = ("model",), agent: str | None = None
    ) -> pd.DataFrame:
        """Usage of the runs started at or after ``since`` (of ``agent``), summed per ``by``: any of
        ``"model"``, ``"agent"``, ``"owner"``, ``"day"`` (see ``executus_nb.frames.usage_df``)."""
        from executus_nb.frames import usage_df

        ids = self.run_ids(since=since, agent=agent)
        return usage_df([ev for events in self.events_of(ids).values() for ev in events], by=by)

    def _events(self, run_id: str | None) -> list[Event]:
        ids = [run_id] if run_id is not None else self.run_ids()
        return [ev for events in self.events_of(ids).values() for ev in events]


def as_status(status: RunStatus | str | None) -> RunStatus | None:
    """``status`` as a ``RunStatus`` (a ``UserError`` naming the statuses for an unknown one)."""
    if status is None:
        return None
    try:
        return RunStatus(status)
    except ValueError:
        raise UserError(f"status={status!r} is not a run status: one of {[s.value for s in RunStatus]}") from None


class _Reads(StoreReads):
    """The reads over an ``EventStore`` that has only the protocol's methods."""

    def __init__(self, store: Any) -> None:
        self.run_ids = store.run_ids
        self.events = store.events


def reads_of(store: Any) -> StoreReads:
    """``store``'s reads (``runs_df``, ``usage_df``, ``steps_df``, ``result``…): its own, or built on its protocol."""
    return store if isinstance(store, StoreReads) else _Reads(store)
