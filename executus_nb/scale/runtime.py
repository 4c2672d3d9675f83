"""The worker side of a fan-out: one executor per fan-out setup, the cells' runs on this process's loop.

Shared by every backend (a worker process, a Dask worker): a backend hands it setups and cells, and a
``send(run_id, event)`` that carries each event back to the parent, where the cell's log adopts it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cloudpickle

from executus_nb.run.background import background_loop
from executus_nb.types.events import Event, RunFinished

if TYPE_CHECKING:
    from executus_nb.run.handle import Run
    from executus_nb.scale.setup import CellRunner, WorkerSetup

Send = Callable[[str, Event], None]
KEPT_SETUPS = 8  # fan-out setups a warm worker keeps loaded (a new fan-out's evicts the oldest)


@dataclass(frozen=True)
class CellJob:
    """One cell for a worker: which setup and column, its prompt, and the run's identity in the parent."""

    setup: str
    col: int
    prompt: Any
    run_id: str
    owner: str | None
    tags: tuple[str, ...]


class WorkerRuntime:
    """Runs cells for the parent: ``load`` a setup once, ``start`` cells, ``cancel`` them, ``close`` at the end."""

    def __init__(self, send: Send):
        self.send = send
        self._setups: dict[str, tuple[CellRunner, WorkerSetup]] = {}
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def has(self, key: str) -> bool:
        return key in self._setups

    def load(self, key: str, blob: bytes) -> None:
        """Unpack a fan-out's setup and build its executor (a failure is raised: the backend reports it)."""
        if key not in self._setups:
            setup: WorkerSetup = cloudpickle.loads(blob)
            self._setups[key] = (setup.executor(), setup)
            for old in list(self._setups)[:-KEPT_SETUPS]:  # earlier fan-outs' with no cell in flight
                if not self._setups[old][0].runs:
                    self.forget(old)

    def start(self, job: CellJob) -> Run:
        """Start the cell's run on this process's background loop; its events go to ``send`` as they happen."""
        executor, setup = self._setups[job.setup]

        def forward(event: Event) -> None:
            if isinstance(event, RunFinished):
                with self._lock:
                    run = self._runs.pop(job.run_id, None)
                if run is not None and run in executor.runs:
                    executor.runs.remove(run)  # the parent keeps the run; a warm worker keeps nothing
            self.send(job.run_id, event)

        async def begin() -> Run:
            run: Run = executor.run(
                setup.columns[job.col],
                job.prompt,
                run_id=job.run_id,
                owner=job.owner,
                tags=[t for t in job.tags if t not in setup.columns[job.col].tags],
                **setup.per_run,
            )
            with self._lock:
                self._runs[job.run_id] = run
            run.log.subscribe(forward, replay=True)  # replay: what it recorded before we listened
            return run

        return asyncio.run_coroutine_threadsafe(begin(), background_loop()).result()

    def cancel(self, run_id: str) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
        return run.cancel() if run is not None else False

    def forget(self, key: str) -> None:
        """Drop a finished fan-out's setup (its executor closed)."""
        entry = self._setups.pop(key, None)
        if entry is not None:
            entry[0].close(timeout=1.0)

    def close(self) -> None:
        for key in list(self._setups):
            self.forget(key)


def warm_process() -> None:
    """litellm imported and its first call paid, on the runs' loop: a worker's set-up before its first cell
    (blocking, seconds: call it from a thread)."""
    from executus_nb.model.backend import prepare, warm_up

    prepare()
    asyncio.run_coroutine_threadsafe(warm_up(), background_loop()).result()


class TurnBatches:
    """A worker's ``send``: events buffered per run and handed to ``deliver(run_id, events)`` once the runs'
    loop turn is over, so a burst of events is one message per run, not one per event."""

    def __init__(self, deliver: Callable[[str, list[Event]], None]):
        self.deliver = deliver
        self._pending: dict[str, list[Event]] = {}

    def send(self, run_id: str, event: Event) -> None:
        """Called on the runs' loop (the only thread that touches the buffer)."""
        first = not self._pending
        self._pending.setdefault(run_id, []).append(event)
        if first:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        batches, self._pending = self._pending, {}
        for run_id, events in batches.items():
            self.deliver(run_id, events)


_process_runtime: WorkerRuntime | None = None
_process_lock = threading.Lock()


def process_runtime(send: Send) -> WorkerRuntime:
    """This worker process's one runtime (made on first use with ``send``): an actor's calls all share it."""
    global _process_runtime
    with _process_lock:
        if _process_runtime is None:
            _process_runtime = WorkerRuntime(send)
        return _process_runtime
