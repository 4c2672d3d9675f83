"""``Schedule``: an agent run on a clock (``every=`` an interval, or once ``at=`` a time) in this process.

A due time missed while the loop was busy or the machine slept is run once on catch-up, tagged ``late``,
with the due times it stands for counted (``missed``); a due time that finds the schedule's last run still
going is skipped.  Both are recorded in ``history``, never dropped silently.  Every run is tagged
``schedule:<name>``, so ``runs_df()`` shows which schedule started it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from executus_nb.agent import Agent
from executus_nb.errors import ConfigError, UserError, unknown_option
from executus_nb.run.background import background_loop
from executus_nb.run.conversation import Prompt, check_prompt
from executus_nb.run.handle import Run
from executus_nb.types.budget import Budget
from executus_nb.types.events import Event, RunFinished

if TYPE_CHECKING:
    import pandas as pd

_log = logging.getLogger(__name__)

TICK_S = 1.0
"""The longest the scheduler sleeps at a time: a jump of the wall clock (a laptop waking) is seen within it."""

MIN_TOLERANCE_S = 0.5
"""A run started this much after its due time (or 10 % of the interval, if more) is recorded as late."""

Outcome = Literal["ran", "late", "skipped_overlap", "error"]
Status = Literal["active", "paused", "cancelled", "finished"]

PER_RUN_OPTIONS = ("deps", "model", "tier", "max_steps", "budget", "hooks", "owner", "tags", "lane", "history")
"""The ``executor.run`` options a schedule passes to each of its runs."""


def _now() -> datetime:
    # The wall clock, not time.monotonic: on some systems the monotonic clock stops while the machine sleeps,
    # and a due time slept through must still be seen as passed.
    return datetime.now(UTC)


@dataclass(frozen=True)
class Firing:
    """What one due time came to: ``ran`` (on time), ``late`` (a catch-up run), ``skipped_overlap`` (the last
    run was still going: no run), or ``error`` (the run could not start: ``error`` says why).

    ``missed`` counts the further due times that passed before this one was seen: they have no run of
    their own (a late run stands for them all).  Times are aware, in UTC.
    """

    due: datetime
    started: datetime
    outcome: Outcome
    run_id: str | None
    lateness_s: float
    missed: int = 0
    error: str | None = None


class ScheduleExecutor(Protocol):
    """What a schedule needs of its executor (an ``Executor`` is one): ``run(...)`` and its ``schedules``."""

    schedules: list[Schedule]

    def run(
        self,
        agent: Agent,
        prompt: Prompt,
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
    ) -> Run: ...


def _interval(every: timedelta | float) -> timedelta:
    if isinstance(every, bool) or not isinstance(every, (timedelta, int, float)):
        raise ConfigError(f"every= takes a timedelta or a number of seconds, not {type(every).__name__}")
    interval = every if isinstance(every, timedelta) else timedelta(seconds=every)
    if interval <= timedelta(0):
        raise ConfigError(f"every= must be a positive interval, not {every!r}")
    return interval


def _moment(at: datetime) -> datetime:
    if not isinstance(at, datetime):
        raise ConfigError(f"at= takes a datetime, not {type(at).__name__}")
    return at.astimezone(UTC)  # a naive datetime is local time


def _free_name(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


class Schedule:
    """The handle of a scheduled agent: ``cancel()``, ``pause()``, ``resume()`` (any thread), ``runs`` it
    started, ``history`` of its due times, ``next_run`` and ``last_run``.

    ``status`` is ``active``, ``paused``, ``cancelled`` or ``finished`` (an ``at=`` schedule after its run);
    ``history`` holds a ``Firing`` per due time; ``wait_for_runs(n)`` (``await_runs`` in async code) waits.
    Made by ``executor.schedule(...)``; it runs on the loop runs would run on (the caller's, else a
    background one).
    """

    def __init__(
        self,
        executor: ScheduleExecutor,
        agent: Agent,
        prompt: Prompt,
        *,
        every: timedelta | float | None = None,
        at: datetime | None = None,
        name: str | None = None,
        **per_run: Any,
    ):
        if not isinstance(agent, Agent):
            raise UserError(f"executor.schedule() needs an Agent, got {type(agent).__name__}")
        if (every is None) == (at is None):
            raise ConfigError("executor.schedule() takes exactly one of every= (an interval) or at= (a datetime)")
        for key in per_run:
            if key not in PER_RUN_OPTIONS:
                raise unknown_option(key, PER_RUN_OPTIONS, "executor.schedule()")
        taken = {s.name for s in executor.schedules}
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"a schedule's name is a non-empty str, not {name!r}")
        if name in taken:
            raise UserError(f"a schedule named {name!r} exists in this executor: give another name")
        self.id = uuid.uuid4().hex[:8]
        self.name: str = name or _free_name(agent.name, taken)
        self.agent = agent
        self.prompt = check_prompt(prompt)
        self.every: timedelta | None = _interval(every) if every is not None else None
        self.at: datetime | None = _moment(at) if at is not None else None
        self.created = _now()
        self.last_run: datetime | None = None
        self._executor = executor
        self._tags = tuple(per_run.pop("tags", ()))
        self._per_run = per_run
        # The grid of due times: anchor + k * every (an every= schedule's first run is one interval away).
        self._anchor = self.at if self.at is not None else self.created + (self.every or timedelta(0))
        self._next: datetime = self._anchor
        self._status: Status = "active"
        self._runs: list[Run] = []
        self._history: list[Firing] = []
        self._lock = threading.RLock()  # held while a run is started, so cancel() returning means no new run
        self._changed = threading.Condition()  # a run started or finished, or the status changed: for waiters
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._wake: asyncio.Event | None = None

    # -- the clock -------------------------------------------------------------------
    def start(self) -> Schedule:
        """Start the scheduler on the running loop, else the background loop; returns the schedule."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = background_loop()
            self._loop = loop
            asyncio.run_coroutine_threadsafe(self._drive(), loop).add_done_callback(self._ended)
            return self
        self._loop = loop
        self._task = loop.create_task(self._drive(), name=f"schedule {self.name}")
        self._task.add_done_callback(self._ended)
        return self

    async def _drive(self) -> None:
        self._task = asyncio.current_task()
        self._wake = wake = asyncio.Event()
        try:
            while True:
                wake.clear()  # before reading the state: a poke from now on ends the nap below at once
                with self._lock:
                    status, due = self._status, self._next
                if status in ("cancelled", "finished"):
                    return
                now = _now()
                if status == "active" and now >= due:
                    self._fire()
                    continue
                # Bounded naps: a blocked loop or a wall-clock jump shows as a late wake-up, never as a lost one.
                nap = TICK_S if status == "paused" else min(TICK_S, (due - now).total_seconds())
                try:
                    await asyncio.wait_for(wake.wait(), nap)
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                if self._status in ("active", "paused"):  # the loop itself stopped: no run will come
                    self._status = "cancelled"
            self._notify()

    def _fire(self) -> None:
        """The due time has come: start a run (late if it is a catch-up), or record an overlap; set the next."""
        with self._lock:
            if self._status != "active":
                return
            now, due = _now(), self._next
            lateness = (now - due).total_seconds()
            missed = 0
            if self.every is not None:
                passed = (now - self._anchor) // self.every  # the last grid time at or before now
                missed = passed - (due - self._anchor) // self.every
                self._next = self._anchor + (passed + 1) * self.every  # on the grid: no drift
            else:
                self._status = "finished"
            tolerance = max(MIN_TOLERANCE_S, 0.1 * self.every.total_seconds() if self.every else 0.0)
            late = missed > 0 or lateness > tolerance
            previous = self._runs[-1] if self._runs else None
            if previous is not None and not previous.done:
                self._record(due, now, "skipped_overlap", None, lateness, missed)
                return
            tags = (*self._tags, f"schedule:{self.name}", *(("late",) if late else ()))
            try:
                run = self._executor.run(self.agent, self.prompt, tags=tags, **self._per_run)
            except Exception as exc:  # noqa: BLE001 — recorded and logged; the schedule and the others go on
                _log.error("schedule %r could not start a run: %s", self.name, exc, exc_info=True)
                self._record(due, now, "error", None, lateness, missed, error=f"{type(exc).__name__}: {exc}")
                return
            self._runs.append(run)
            self.last_run = now
            run.log.subscribe(self._on_event)
            self._record(due, now, "late" if late else "ran", run.run_id, lateness, missed)

    def _record(
        self,
        due: datetime,
        now: datetime,
        outcome: Outcome,
        run_id: str | None,
        lateness: float,
        missed: int,
        error: str | None = None,
    ) -> None:
        self._history.append(Firing(due, now, outcome, run_id, max(lateness, 0.0), missed, error))
        if outcome == "skipped_overlap":
            _log.info("schedule %r skipped the run due at %s: its last run is still going", self.name, due)
        self._notify()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _ended(self, future: asyncio.Future[None] | concurrent.futures.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            _log.error("schedule %r stopped on an error", self.name, exc_info=future.exception())

    def _poke(self) -> None:
        """Wake the scheduler so it sees a new status now (from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop closed meanwhile: there is nothing left to wake
                pass
        self._notify()

    # -- control ---------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop for good: no run starts after this returns (a run in flight goes on: ``runs[-1].cancel()``)."""
        with self._lock:
            if self._status in ("active", "paused"):
                self._status = "cancelled"
        self._poke()

    def pause(self) -> None:
        """Start no run until ``resume()``; due times while paused are not caught up."""
        with self._lock:
            if self._status == "active":
                self._status = "paused"
        self._poke()

    def resume(self) -> None:
        """Go on after ``pause()``: an ``every=`` schedule at its next due time on its grid, an ``at=`` one at
        its time (at once, late, if it passed meanwhile)."""
        with self._lock:
            if self._status in ("cancelled", "finished"):
                raise UserError(f"schedule {self.name!r} is {self._status}: schedule the agent again instead")
            if self._status == "paused":
                if self.every is not None:
                    now = _now()
                    if now >= self._next:
                        self._next = self._anchor + ((now - self._anchor) // self.every + 1) * self.every
                self._status = "active"
        self._poke()

    # -- reading ---------------------------------------------------------------------
    @property
    def status(self) -> Status:
        return self._status

    @property
    def next_run(self) -> datetime | None:
        """When the next run is due (UTC); None unless the schedule is active."""
        with self._lock:
            return self._next if self._status == "active" else None

    @property
    def runs(self) -> list[Run]:
        """The runs this schedule started, oldest first (a copy)."""
        with self._lock:
            return list(self._runs)

    @property
    def history(self) -> list[Firing]:
        """What each due time came to, oldest first (a copy): see ``Firing``."""
        with self._lock:
            return list(self._history)

    def _finished_runs(self, n: int) -> list[Run] | None:
        # Read without the lock (a list copy is atomic): waiters hold ``_changed``, which _fire takes under it.
        runs = list(self._runs)
        # A run starts only once the one before it has finished, so the n-th done means the first n are.
        if len(runs) >= n and (n == 0 or runs[n - 1].done):
            return runs
        if self._status in ("cancelled", "finished") and all(run.done for run in runs):
            raise UserError(f"schedule {self.name!r} is {self._status} after {len(runs)} runs: {n} will not come")
        return None

    def wait_for_runs(self, n: int, timeout: float | None = None) -> list[Run]:
        """Block until ``n`` runs of this schedule have finished and return its runs (works in a notebook cell).

        ``TimeoutError`` after ``timeout`` s; ``UserError`` if the schedule ended with fewer.
        """
        if self._loop is not None and _running_loop() is self._loop:
            # The schedule lives on the loop this code runs in (a notebook cell): re-enter it, as Run.wait does.
            import nest_asyncio2

            nest_asyncio2.apply(self._loop)
            return self._loop.run_until_complete(self.await_runs(n, timeout))
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while (runs := self._finished_runs(n)) is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(self._not_yet(n, timeout))
                self._changed.wait(left if left is not None else TICK_S)
        return runs

    async def await_runs(self, n: int, timeout: float | None = None) -> list[Run]:
        """``wait_for_runs`` for async code (the schedule's loop or another): await ``n`` finished runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (runs := self._finished_runs(n)) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(self._not_yet(n, timeout))
            # Polled: the runs finish on the schedule's loop, which may not be this one.
            await asyncio.sleep(0.02)
        return runs

    def _not_yet(self, n: int, timeout: float | None) -> str:
        done = sum(run.done for run in self.runs)
        return f"schedule {self.name!r}: {done} of {n} runs finished within {timeout} s"

    def row(self) -> dict[str, Any]:
        """One row of ``executor.schedules_df()``."""
        history = self.history
        return {
            "name": self.name,
            "agent": self.agent.name,
            "every_s": self.every.total_seconds() if self.every is not None else None,
            "at": self.at,
            "status": self.status,
            "next_run": self.next_run,
            "last_run": self.last_run,
            "runs": len(self.runs),
            "late": sum(f.outcome == "late" for f in history),
            "skipped": sum(f.outcome == "skipped_overlap" for f in history),
            "missed": sum(f.missed for f in history),
        }

    def __repr__(self) -> str:
        when = f"every={self.every}" if self.every is not None else f"at={self.at}"
        return f"Schedule({self.name!r}, {when}, status={self.status!r}, runs={len(self.runs)})"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


SCHEDULE_COLUMNS = [
    "name",
    "agent",
    "every_s",
    "at",
    "status",
    "next_run",
    "last_run",
    "runs",
    "late",
    "skipped",
    "missed",
]


def schedules_df(schedules: Sequence[Schedule]) -> pd.DataFrame:
    """One row per schedule: its name, agent, interval or time, status, next and last run, and counts of its
    runs, late runs, skipped overlaps and missed due times (collapsed into a late run)."""
    import pandas as pd

    return pd.DataFrame([s.row() for s in schedules], columns=SCHEDULE_COLUMNS)
