"""Ray as a fan-out backend: ``fanout(..., backend="ray")`` or ``backend=RayBackend(workers=n)``
(``pip install 'executus_nb[ray]'``).

One async actor per worker (``workers``, default one per CPU of the cluster) runs its cells on that worker
process's own loop, many at once.  A cell is a streaming generator call: the worker yields the run's events
in batches as they happen and the cell's log here adopts each, in order, until ``RunFinished``.  When no
Ray is connected, the backend starts a local one (no dashboard, the workers' output kept out of the
notebook) and shuts it down on ``close()``; a cluster the caller connected (``ray.init(address=...)``) stays.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import cloudpickle

from executus_nb.errors import BackendError, WorkerLost
from executus_nb.run.remote import RemoteBody, RemoteCall
from executus_nb.scale.actors import ActorSlot, ensure_loaded, least_loaded
from executus_nb.scale.runtime import CellJob, TurnBatches, process_runtime, warm_process
from executus_nb.types.events import Event, RunFinished

CANCEL_GRACE_S = 10.0  # how long a cancelled cell waits for the worker's own ending
MAX_CELLS_PER_ACTOR = 10_000  # an actor's concurrent calls (Ray's default for async actors is 1,000)


class RayBackend:
    """Cells on a Ray cluster: the one connected, or a local one started on first use (``executus_nb[ray]``)."""

    name = "ray"

    def __init__(self, workers: int | None = None, **init: Any):
        try:
            import ray
        except ImportError:
            raise BackendError("backend='ray' needs Ray: pip install 'executus_nb[ray]'") from None
        if workers is not None and workers < 1:
            raise BackendError(f"RayBackend(workers={workers}): give at least one worker")
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            # A notebook's own Ray: no dashboard, the workers' prints not in the cells.  (It listens on the
            # machine's interfaces whatever it is told: Ray turns a loopback node address into the node's own.)
            options = {"include_dashboard": False, "log_to_driver": False, **init}
            ray.init(**options)
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._actor_class = ray.remote(CellActor).options(
            num_cpus=0, max_concurrency=MAX_CELLS_PER_ACTOR, scheduling_strategy="SPREAD"
        )
        self._slots: list[ActorSlot] = []
        self._made = 0
        self._lock = threading.Lock()
        self._closed = False

    def _fill(self) -> list[ActorSlot]:
        """The actors, made (or remade, for a dead one) up to ``workers``; call under the lock."""
        if self._closed:
            raise BackendError("this Ray backend was closed")
        while len(self._slots) < self.workers:
            self._made += 1
            self._slots.append(ActorSlot(f"ray-actor-{self._made}", self._actor_class.remote()))
        return list(self._slots)

    def _pick(self) -> ActorSlot:
        """The least-loaded actor."""
        with self._lock:
            return least_loaded(self._fill())

    def _forget(self, slot: ActorSlot) -> None:
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Start every actor and wait until each has imported the model layer (the warm pool)."""
        with self._lock:
            slots = self._fill()
        self._ray.get([slot.handle.warm.remote() for slot in slots], timeout=timeout)

    @property
    def pids(self) -> list[int]:
        """The process ids of the actors' workers (the actors made when missing)."""
        with self._lock:
            slots = self._fill()
        return sorted(set(self._ray.get([slot.handle.pid.remote() for slot in slots])))

    def cell(self, key: str, blob: bytes, col: int, prompt: Any) -> RemoteBody:
        ray = self._ray

        async def body(call: RemoteCall) -> None:
            actor = self._pick()
            job = CellJob(key, col, prompt, call.run_id, call.owner, call.tags)
            draining: asyncio.Future[None] | None = None
            try:
                try:
                    await ensure_loaded(actor, key, self._lock, lambda: actor.handle.load.remote(key, blob))
                    stream = actor.handle.run.remote(job)
                    draining = asyncio.ensure_future(_adopt_stream(call, stream))
                    await asyncio.shield(draining)
                except asyncio.CancelledError:
                    if draining is not None and not draining.done():
                        actor.handle.cancel.remote(call.run_id)
                        try:  # the worker's own ending (its steps closed there) is better than one made here
                            await asyncio.wait_for(draining, CANCEL_GRACE_S)
                        except (Exception, asyncio.CancelledError):  # noqa: BLE001 — ended here then (run/remote.py)
                            pass
                    raise
            except ray.exceptions.RayActorError as exc:  # the actor's worker process died (or its node)
                self._forget(actor)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise WorkerLost(f"the Ray worker of {actor.address} died before the run finished ({reason})") from None
            finally:
                with self._lock:
                    actor.running -= 1

        return body

    def close(self) -> None:
        """Stop the actors; shut Ray down when this backend started it."""
        with self._lock:
            self._closed = True
            slots, self._slots = self._slots, []
        if not self._ray.is_initialized():
            return
        for slot in slots:
            try:
                self._ray.kill(slot.handle)
            except Exception:  # noqa: BLE001 — an actor already gone
                pass
        if self._started:
            self._ray.shutdown()

    def __repr__(self) -> str:
        return f"RayBackend(workers={self.workers})"


async def _adopt_stream(call: RemoteCall, stream: Any) -> None:
    """Adopt each batch the worker yields, in order, until the run's end."""
    async for ref in stream:
        call.adopt(cloudpickle.loads(await ref))


# -- the worker side ------------------------------------------------------------------------------
_queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[list[Event]]]] = {}


def _deliver(run_id: str, events: list[Event]) -> None:
    """On the runs' loop: a run's batch to the actor's loop, where its generator yields it."""
    entry = _queues.get(run_id)
    if entry is not None:
        entry[0].call_soon_threadsafe(entry[1].put_nowait, events)


_batches = TurnBatches(_deliver)


class CellActor:
    """The actor on one Ray worker: loads setups and runs cells on the worker process's runtime."""

    async def pid(self) -> int:
        return os.getpid()

    async def warm(self) -> None:
        """Import the model layer (litellm: seconds) before the first cell needs it."""
        await asyncio.to_thread(warm_process)

    async def load(self, key: str, blob: bytes) -> None:
        """Unpack a fan-out's setup (the first one imports litellm: off this loop)."""
        await asyncio.to_thread(process_runtime(_batches.send).load, key, blob)

    async def run(self, job: CellJob) -> AsyncIterator[bytes]:
        """Run one cell; yield its events in pickled batches as they happen, the last holding ``RunFinished``."""
        queue: asyncio.Queue[list[Event]] = asyncio.Queue()
        _queues[job.run_id] = (asyncio.get_running_loop(), queue)
        try:
            await asyncio.to_thread(process_runtime(_batches.send).start, job)
            while True:
                events = await queue.get()
                yield cloudpickle.dumps(events)
                if any(isinstance(e, RunFinished) for e in events):
                    return
        finally:
            _queues.pop(job.run_id, None)

    async def cancel(self, run_id: str) -> bool:
        return await asyncio.to_thread(process_runtime(_batches.send).cancel, run_id)
