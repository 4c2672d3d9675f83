"""A Dask cluster as a fan-out backend: ``fanout(..., backend=Client(LocalCluster()))`` or a scheduler's address.

Each cell is one task (a coroutine on the Dask worker; the run itself on the worker process's own loop), its
setup scattered to the workers once per fan-out.  Events stream back through Dask's structured events
(``Worker.log_event`` → ``Client.subscribe_topic``), in order, to the cell's log here.  A worker that dies
makes the scheduler run its tasks again elsewhere: the first event of a second attempt, or the task's loss,
fails the cell with ``WorkerLost`` (its first attempt's steps are kept), so a call is never counted twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from typing import Any

import cloudpickle

from executus_nb.errors import BackendError, WorkerLost
from executus_nb.run.remote import RemoteBody, RemoteCall
from executus_nb.scale.runtime import CellJob, WorkerRuntime
from executus_nb.types.events import Event, RunFinished

CANCEL_GRACE_S = 10.0  # how long a cancelled cell waits for the worker's own ending
TAIL_GRACE_S = 30.0  # how long a finished task's last events may trail its completion (two paths to the client)


class _Link:
    """One cell in flight: its events from the one attempt it accepts, and how its task ended."""

    def __init__(self, call: RemoteCall, loop: asyncio.AbstractEventLoop):
        self.call = call
        self.loop = loop
        self.attempt: str | None = None
        self.next_seq = 0
        self.ended: asyncio.Future[None] = loop.create_future()
        self.task_status: asyncio.Future[str] = loop.create_future()

    def receive(self, attempt: str, payload: Any) -> None:  # on the run's loop
        if self.attempt is None:
            self.attempt = attempt
        elif attempt != self.attempt:  # the scheduler ran it again: the first worker died
            self.fail(WorkerLost("the Dask worker running it died; the scheduler started it again elsewhere"))
            return
        if isinstance(payload, str):
            self.fail(BackendError(f"the Dask worker could not run the cell: {payload}"))
            return
        fresh = [e for e in cloudpickle.loads(payload) if e.seq >= self.next_seq]
        if fresh:
            self.next_seq = fresh[-1].seq + 1
            self.call.adopt(fresh)
        if self.call.done.is_set() and not self.ended.done():
            self.ended.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.ended.done():
            self.ended.set_exception(exc)

    def task_done(self, status: str) -> None:
        if not self.task_status.done():
            self.task_status.set_result(status)


class DaskBackend:
    """A ``dask.distributed`` ``Client``'s cluster running a fan-out's cells (``executus_nb[dask]``)."""

    name = "dask"

    def __init__(self, client: Any):
        self.client = client
        self.topic = f"executus-nb-{uuid.uuid4().hex[:12]}"
        self._links: dict[str, _Link] = {}
        self._setups: dict[str, Any] = {}
        self._lock = threading.Lock()
        client.subscribe_topic(self.topic, self._on_event)

    @property
    def dashboard_link(self) -> str | None:
        """The cluster's dashboard (task stream, workers' memory), when it has one."""
        return getattr(self.client, "dashboard_link", None)

    def _on_event(self, event: tuple[float, Any]) -> None:  # on the client's loop
        run_id, attempt, payload = event[1]
        with self._lock:
            link = self._links.get(run_id)
        if link is not None:
            link.loop.call_soon_threadsafe(link.receive, attempt, payload)

    def _setup(self, key: str, blob: bytes) -> Any:
        with self._lock:
            if key not in self._setups:
                # One copy per worker, sent once: every cell's task names it (a scatter blocks briefly, once).
                self._setups[key] = self.client.scatter(blob, broadcast=True, hash=False)
            return self._setups[key]

    def cell(self, key: str, blob: bytes, col: int, prompt: Any) -> RemoteBody:
        async def body(call: RemoteCall) -> None:
            loop = asyncio.get_running_loop()
            setup = await asyncio.to_thread(self._setup, key, blob)
            link = _Link(call, loop)
            with self._lock:
                self._links[call.run_id] = link
            job = CellJob(key, col, prompt, call.run_id, call.owner, call.tags)
            future = self.client.submit(
                run_cell, setup, job, self.topic, key=f"executus-cell-{call.run_id}", pure=False, retries=0
            )
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(link.task_done, f.status))
            try:
                await _until_ended(link)
            except asyncio.CancelledError:
                future.cancel()
                try:
                    await asyncio.wait_for(asyncio.shield(link.ended), CANCEL_GRACE_S)
                except (Exception, asyncio.CancelledError):  # noqa: BLE001 — ended here then (run/remote.py)
                    pass
                raise
            finally:
                with self._lock:
                    self._links.pop(call.run_id, None)
                future.release()

        return body

    def close(self) -> None:
        """Stop listening (the cluster is the caller's: it stays up)."""
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # noqa: BLE001 — a client already closed
            pass
        for future in self._setups.values():
            future.release()
        self._setups.clear()

    def __repr__(self) -> str:
        return f"DaskBackend({self.client!r})"


async def _until_ended(link: _Link) -> None:
    """The cell's ``RunFinished`` adopted; or its task ended without one (lost, failed): ``WorkerLost``."""
    status_wait: asyncio.Future[str] = asyncio.ensure_future(asyncio.shield(link.task_status))
    try:
        waiters: list[asyncio.Future[Any]] = [link.ended, status_wait]
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if link.ended in done:
            return link.ended.result()
        status = status_wait.result()
        if status == "finished":  # its last events may trail the task's completion: they take another path
            try:
                return await asyncio.wait_for(asyncio.shield(link.ended), TAIL_GRACE_S)
            except TimeoutError:
                pass
        raise WorkerLost(f"the Dask task ended ({status}) before the run finished: its worker may have died")
    finally:
        status_wait.cancel()


# -- the worker side ------------------------------------------------------------------------------
_runtime: WorkerRuntime | None = None
_routes: dict[str, tuple[Any, str, str, concurrent.futures.Future[None]]] = {}  # run_id → worker, topic, attempt…
_pending: dict[str, list[Event]] = {}
_runtime_lock = threading.Lock()


def _send(run_id: str, event: Event) -> None:
    """Buffer ``event`` (on the runs' loop) and flush the buffer once this loop turn is over: a batch per turn."""
    first = not _pending
    _pending.setdefault(run_id, []).append(event)
    if first:
        asyncio.get_running_loop().call_soon(_flush)


def _flush() -> None:
    batches = dict(_pending)
    _pending.clear()
    for run_id, events in batches.items():
        route = _routes.get(run_id)
        if route is None:
            continue
        worker, topic, attempt, finished = route
        # Dask's events are msgpack: the batch goes pickled (events may hold the user's own objects)
        worker.loop.add_callback(worker.log_event, topic, [run_id, attempt, cloudpickle.dumps(events)])
        if any(isinstance(e, RunFinished) for e in events):
            _routes.pop(run_id, None)
            finished.set_result(None)


async def run_cell(setup: bytes, job: CellJob, topic: str) -> None:
    """The task of one cell on a Dask worker: run it on this process's loop, stream its events, end with it."""
    from distributed import get_worker

    global _runtime
    worker = get_worker()
    attempt = uuid.uuid4().hex[:12]
    finished: concurrent.futures.Future[None] = concurrent.futures.Future()
    try:
        with _runtime_lock:
            if _runtime is None:
                _runtime = WorkerRuntime(_send)
            runtime = _runtime
        await asyncio.to_thread(runtime.load, job.setup, setup)  # the first one imports litellm: off this loop
        _routes[job.run_id] = (worker, topic, attempt, finished)
        await asyncio.to_thread(runtime.start, job)
    except Exception as exc:  # noqa: BLE001 — reported to the parent, which fails the cell with it
        worker.log_event(topic, [job.run_id, attempt, f"{type(exc).__name__}: {exc}"])
        return
    try:
        await asyncio.shield(asyncio.wrap_future(finished))
    except asyncio.CancelledError:  # the fan-out was cancelled: the run ends on its own (steps closed there)
        runtime.cancel(job.run_id)
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(finished)), CANCEL_GRACE_S)
        raise
