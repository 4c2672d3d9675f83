"""A Dask cluster as a fan-out backend: ``fanout(..., backend=Client(LocalCluster()))`` or a scheduler's address.

One actor per Dask worker (``CellActor``) runs that worker's cells on the worker process's own loop.  An actor's
async method holds none of the worker's thread slots, so a worker with one thread still runs many cells at once
(a task per cell would run one at a time).  Events stream back through Dask's structured events
(``Worker.log_event`` → ``Client.subscribe_topic``) for the live view; the call's result is the run's whole log,
which the cell's log here completes itself from, so nothing depends on which path arrives first.  A worker
that dies fails the calls it held: those cells end ``failed`` with ``WorkerLost``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import cloudpickle

from executus_nb.errors import BackendError, WorkerLost
from executus_nb.run.remote import RemoteBody, RemoteCall
from executus_nb.scale.actors import ActorSlot, ensure_loaded, least_loaded
from executus_nb.scale.runtime import CellJob, TurnBatches, process_runtime
from executus_nb.types.events import Event, RunFinished

CANCEL_GRACE_S = 10.0  # how long a cancelled cell waits for the worker's own ending
PLACE_TIMEOUT_S = 60.0  # how long placing an actor on a worker may take before that worker is passed over


class DaskBackend:
    """A ``dask.distributed`` ``Client``'s cluster running a fan-out's cells (``executus_nb[dask]``)."""

    name = "dask"

    def __init__(self, client: Any):
        if getattr(client, "asynchronous", False):
            raise BackendError("fanout(backend=...) takes a Dask Client made without asynchronous=True")
        self.client = client
        self.topic = f"executus-nb-{uuid.uuid4().hex[:12]}"
        self._links: dict[str, tuple[RemoteCall, asyncio.AbstractEventLoop]] = {}
        self._actors: dict[str, ActorSlot] = {}
        self._placed_for: set[str] = set()  # the fan-outs (setup keys) for which the workers were looked at
        self._placing = threading.Lock()  # never taken on the client's loop
        self._lock = threading.Lock()
        client.subscribe_topic(self.topic, self._on_event)

    @property
    def dashboard_link(self) -> str | None:
        """The cluster's dashboard (task stream, workers' memory), when it has one."""
        return getattr(self.client, "dashboard_link", None)

    def _on_event(self, event: tuple[float, Any]) -> None:  # on the client's loop: to the run's loop, in order
        run_id, payload = event[1]
        link = self._links.get(run_id)  # no lock: this loop must never wait for a thread that waits for it
        if link is not None:
            link[1].call_soon_threadsafe(_adopt_new, link[0], cloudpickle.loads(payload))

    def _place(self) -> None:
        """An actor on each worker that has none (the cluster may have grown); the gone workers' dropped.
        Blocking (the scheduler's answer): called from a thread, never holding the lock the client's loop takes."""
        workers = set(self.client.scheduler_info(n_workers=-1)["workers"])
        placed = {}
        for address in sorted(workers - set(self._actors)):
            future = self.client.submit(CellActor, self.topic, actor=True, workers=[address], pure=False)
            try:  # a worker the scheduler still lists but that is gone would hold the future forever
                placed[address] = ActorSlot(address, future.result(timeout=PLACE_TIMEOUT_S))
            except Exception:  # noqa: BLE001 — that worker gets no cells; the others (or none: BackendError) do
                future.cancel()
        with self._lock:
            for gone in set(self._actors) - workers:
                del self._actors[gone]
            self._actors.update(placed)

    def _pick(self, key: str) -> ActorSlot:
        """The least-loaded worker's actor; the workers are looked at again once per fan-out."""
        with self._placing:  # the first cells of a fan-out come at once: the workers are looked at once
            if key not in self._placed_for:
                self._place()
                self._placed_for.add(key)
        with self._lock:
            if not self._actors:
                raise BackendError("the Dask cluster has no workers")
            return least_loaded(list(self._actors.values()))

    def _forget(self, actor: ActorSlot) -> None:
        """Drop a dead worker's actor; the next cell looks at the workers again (a restarted one gets an actor)."""
        with self._lock:
            if self._actors.get(actor.address) is actor:
                del self._actors[actor.address]
            self._placed_for.clear()

    async def _call(self, method: Any, *args: Any) -> Any:
        """Call an actor's method on the client's loop (where Dask's futures live), awaited from this loop."""

        async def call() -> Any:
            return await method(*args)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self.client.loop.asyncio_loop))

    def cell(self, key: str, blob: bytes, col: int, prompt: Any) -> RemoteBody:
        async def body(call: RemoteCall) -> None:
            loop = asyncio.get_running_loop()
            actor = await asyncio.to_thread(self._pick, key)
            job = CellJob(key, col, prompt, call.run_id, call.owner, call.tags)
            running: asyncio.Future[bytes] | None = None
            try:
                try:
                    await ensure_loaded(actor, key, self._lock, lambda: self._call(actor.handle.load, key, blob))
                    with self._lock:
                        self._links[call.run_id] = (call, loop)
                    running = asyncio.ensure_future(self._call(actor.handle.run, job))
                    _adopt_new(call, cloudpickle.loads(await asyncio.shield(running)))
                except asyncio.CancelledError:
                    if running is not None:
                        await self._call(actor.handle.cancel, call.run_id)
                        try:  # the worker's own ending (its steps closed there) is better than one made here
                            _adopt_new(call, cloudpickle.loads(await asyncio.wait_for(running, CANCEL_GRACE_S)))
                        except (Exception, asyncio.CancelledError):  # noqa: BLE001 — ended here then (run/remote.py)
                            pass
                    raise
            except (OSError, RuntimeError) as exc:  # the connection broke, or Dask says the actor's worker is lost
                if isinstance(exc, RuntimeError) and "Actor was lost" not in str(exc):
                    raise
                self._forget(actor)
                raise WorkerLost(f"the Dask worker {actor.address} died before the run finished ({exc})") from None
            finally:
                with self._lock:
                    self._links.pop(call.run_id, None)
                    actor.running -= 1

        return body

    def close(self) -> None:
        """Stop listening and drop the actors (the cluster is the caller's: it stays up)."""
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # noqa: BLE001 — a client already closed
            pass
        with self._lock:
            self._actors.clear()

    def __repr__(self) -> str:
        return f"DaskBackend({self.client!r})"


def _adopt_new(call: RemoteCall, events: list[Event]) -> None:
    """Adopt the events the log does not hold yet (the stream and the call's result overlap; seq says which)."""
    fresh = [e for e in events if e.seq >= len(call.log.events)]
    if fresh and fresh[0].seq == len(call.log.events):
        call.adopt(fresh)


# -- the worker side ------------------------------------------------------------------------------
_streams: dict[str, tuple[Any, str, asyncio.AbstractEventLoop, asyncio.Future[list[Event]]]] = {}


def _deliver(run_id: str, events: list[Event]) -> None:
    """On the runs' loop: a run's batch to the parent through the worker's structured events."""
    stream = _streams.get(run_id)
    if stream is None:
        return
    worker, topic, loop, ended = stream
    # Dask's events are msgpack: the batch goes pickled (events may hold the user's own objects).
    worker.loop.add_callback(worker.log_event, topic, [run_id, cloudpickle.dumps(events)])
    if any(isinstance(e, RunFinished) for e in events):
        _streams.pop(run_id, None)
        loop.call_soon_threadsafe(ended.set_result, events)


_batches = TurnBatches(_deliver)


class CellActor:
    """The actor on one Dask worker: loads setups and runs cells on the worker process's runtime."""

    def __init__(self, topic: str):
        self.topic = topic

    async def load(self, key: str, blob: bytes) -> None:
        """Unpack a fan-out's setup (the first one imports litellm: off this loop)."""
        await asyncio.to_thread(process_runtime(_batches.send).load, key, blob)

    async def run(self, job: CellJob) -> bytes:
        """Run one cell to its end; its whole log, pickled (the parent adopts what the stream did not bring)."""
        from distributed import get_worker

        runtime = process_runtime(_batches.send)
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[list[Event]] = loop.create_future()
        _streams[job.run_id] = (get_worker(), self.topic, loop, ended)
        run = await asyncio.to_thread(runtime.start, job)
        await ended
        return cloudpickle.dumps(list(run.log.events))

    async def cancel(self, run_id: str) -> bool:
        return await asyncio.to_thread(process_runtime(_batches.send).cancel, run_id)
