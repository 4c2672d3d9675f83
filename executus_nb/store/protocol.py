"""The ``EventStore`` port: where every run's events are kept, and read back by run id.

An executor writes through ``append`` from its event loop, so ``append`` never
blocks on I/O: a store queues and writes elsewhere; ``flush`` waits for the
queue.  ``MemoryStore`` keeps events in memory (the default); ``SQLiteStore``
(``store/sqlite.py``) keeps them in a file that other sessions can read.

A store whose writes can fail may expose ``failure`` (None while writes succeed; else an object
with ``episode``, ``error`` and ``pending``, as ``SQLiteStore.failure``): the executor records each
new episode as a ``StoreFailed`` event in the runs still going.  The reads every store gets
(``runs_df``, ``usage_df``, ``steps_df``, ``result``) are built on ``run_ids`` and ``events``
(``store/reads.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from executus_nb.errors import UserError
from executus_nb.store.reads import StoreReads, as_status
from executus_nb.types.events import Event, RunFinished, RunStarted
from executus_nb.types.status import RunStatus

__all__ = ["EventStore", "MemoryStore"]


@runtime_checkable
class EventStore(Protocol):
    """Keeps the events of every run, keyed by ``(run_id, seq)``: appending an event twice keeps one."""

    def append(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for writing; returns at once (called on the run's event loop)."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Block until every event queued so far is written, or ``timeout`` seconds passed."""
        ...

    def events(self, run_id: str) -> list[Event]:
        """The stored events of one run, in ``seq`` order (empty for an unknown run)."""
        ...

    def run_ids(
        self,
        since: datetime | str | None = None,
        agent: str | None = None,
        status: RunStatus | str | None = None,
    ) -> list[str]:
        """The ids of the stored runs, oldest start first: started at or after ``since`` (a datetime, naive
        read as UTC, or an ISO string), of ``agent``, with ``status`` (``"running"``: no ``RunFinished`` yet)."""
        ...

    def close(self) -> None:
        """Write what is queued and release the store's resources."""
        ...


class MemoryStore(StoreReads):
    """An ``EventStore`` in memory: lives as long as the process (thread-safe, writes are immediate)."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[int, Event]] = {}
        self._lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> None:
        with self._lock:
            for ev in events:
                self._runs.setdefault(ev.run_id, {})[ev.seq] = ev

    def flush(self, timeout: float | None = None) -> None:
        return None

    def events(self, run_id: str) -> list[Event]:
        with self._lock:
            run = self._runs.get(run_id, {})
            return [run[seq] for seq in sorted(run)]

    def run_ids(
        self,
        since: datetime | str | None = None,
        agent: str | None = None,
        status: RunStatus | str | None = None,
    ) -> list[str]:
        wanted = as_status(status)
        since = as_utc(since)
        with self._lock:
            runs = [sorted(run.items()) for run in self._runs.values() if run]
        picked: list[tuple[datetime, str]] = []
        for run in runs:
            first = run[0][1]
            if agent is not None and first.agent != agent:
                continue
            started = first.ts if isinstance(first, RunStarted) else min(ev.ts for _, ev in run)
            if since is not None and started < since:
                continue
            if wanted is not None and _status(ev for _, ev in run) != wanted:
                continue
            picked.append((started, first.run_id))
        return [run_id for _, run_id in sorted(picked)]

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        with self._lock:
            return f"MemoryStore(runs={len(self._runs)})"


def _status(events: Iterable[Event]) -> RunStatus:
    """The status a run's events end in: its ``RunFinished``'s, else ``running``."""
    for ev in events:
        if isinstance(ev, RunFinished):
            return RunStatus(ev.status)
    return RunStatus.RUNNING


def as_utc(when: datetime | str | None) -> datetime | None:
    """``when`` as an aware UTC time (a naive time is read as UTC, as event times are; a str is ISO 8601)."""
    if when is None:
        return None
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            raise UserError(f"since={when!r} is not an ISO date or time (such as '2026-12-01')") from None
    if not isinstance(when, datetime):
        raise UserError(f"since= takes a datetime or an ISO date string, not {type(when).__name__}")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
