"""The ``processes`` backend: worker processes on this machine (default one per core), each with its own loop.

The pool is warm: its workers start on first use (each pays litellm's import once), are reused by every
later fan-out of the executor, and stop with ``executor.close()``, at exit, or when this process dies (a
worker reads EOF and leaves).  A worker that dies fails its unfinished cells with ``WorkerLost``; the next
cell sent to that slot starts a fresh worker, so ``retry_failed()`` just works.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle

from executus_nb.errors import BackendError, WorkerLost
from executus_nb.run.remote import RemoteBody, RemoteCall
from executus_nb.scale.runtime import CellJob
from executus_nb.types.events import Event

CANCEL_GRACE_S = 10.0  # how long a cancelled cell waits for its worker's own ending before ending here
STOP_GRACE_S = 3.0  # how long close() waits for a worker to leave before it is killed


class _Link:
    """One cell in flight on a worker: its events go to the run's log on the run's loop."""

    def __init__(self, call: RemoteCall, loop: asyncio.AbstractEventLoop):
        self.call = call
        self.loop = loop
        self.ended: asyncio.Future[None] = loop.create_future()

    def deliver(self, events: list[Event]) -> None:  # on the run's loop
        self.call.adopt(events)
        if self.call.done.is_set() and not self.ended.done():
            self.ended.set_result(None)

    def fail(self, exc: BaseException) -> None:  # on the run's loop
        if not self.ended.done():
            self.ended.set_exception(exc)


class _Worker:
    """One worker process, the socket to it, and the cells it runs."""

    def __init__(self, index: int):
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        # The worker imports what this process can: the package, and modules beside the notebook.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "executus_nb.scale.worker_process", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=os.getcwd(),
        )
        theirs.close()
        self.index = index
        self.conn = Connection(mine.detach())
        self.links: dict[str, _Link] = {}
        self.loaded: set[str] = set()
        self.alive = True
        self.ready = threading.Event()
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name=f"executus-pool-{index}-in", daemon=True).start()
        threading.Thread(target=self._write, name=f"executus-pool-{index}-out", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def post(self, message: Any) -> None:
        """Queue a message for the worker (written by a thread: the caller's loop never blocks on the socket)."""
        self._outbox.put(message)

    def submit(self, key: str, blob: bytes, job: CellJob, link: _Link) -> None:
        with self._lock:
            if not self.alive:
                raise WorkerLost(f"worker process {self.pid} has exited")
            self.links[job.run_id] = link
            if key not in self.loaded:
                self.loaded.add(key)
                self.post(("setup", key, blob))
        self.post(("run", job))

    def forget(self, run_id: str) -> None:
        with self._lock:
            self.links.pop(run_id, None)

    def _write(self) -> None:
        while True:
            message = self._outbox.get()
            if message is None:
                return
            try:
                self.conn.send_bytes(cloudpickle.dumps(message))
            except (OSError, ValueError):
                return  # the worker is gone: _read reports it

    def _read(self) -> None:
        try:
            while True:
                message = cloudpickle.loads(self.conn.recv_bytes())
                if message[0] == "events":
                    self._dispatch(message[1])
                elif message[0] == "ready":
                    self.ready.set()
                elif message[0] == "failed":
                    self._failed(*message[1:])
        except (EOFError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 — an undecodable message: the worker is unusable
            self._died(f"its message could not be read ({type(exc).__name__}: {exc})")
            return
        self._died()

    def _dispatch(self, batch: list[tuple[str, Event]]) -> None:
        by_run: dict[str, list[Event]] = {}
        for run_id, event in batch:
            by_run.setdefault(run_id, []).append(event)
        with self._lock:
            links = [(self.links.get(run_id), events) for run_id, events in by_run.items()]
        for link, events in links:
            if link is not None:
                link.loop.call_soon_threadsafe(link.deliver, events)

    def _failed(self, kind: str, what: str | None, detail: str) -> None:
        with self._lock:
            if kind == "setup":
                targets = list(self.links.values())  # every cell of that fan-out on this worker
            else:
                targets = [self.links[what]] if what in self.links else []
        for link in targets:
            link.loop.call_soon_threadsafe(link.fail, BackendError(f"the worker could not run the cell: {detail}"))

    def _died(self, why: str | None = None) -> None:
        with self._lock:
            self.alive = False
            links, self.links = list(self.links.values()), {}
        try:
            code = self.process.wait(timeout=2.0)
            how = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        except subprocess.TimeoutExpired:
            how = "it stopped answering"
        reason = f"worker process {self.pid} died ({why or how}) before the run finished"
        for link in links:
            link.loop.call_soon_threadsafe(link.fail, WorkerLost(reason))
        self._outbox.put(None)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Ask the worker to leave; killed if it has not within ``grace`` s.  No process is left behind."""
        self.post(("stop",))
        self.post(None)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=grace)
        self.conn.close()


class ProcessPool:
    """``backend="processes"``: ``workers`` worker processes (default one per core), started on first use."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise BackendError(f"ProcessPool(workers=...) must be a whole number of at least 1, not {workers!r}")
        self.size = workers or os.cpu_count() or 1
        self._workers: list[_Worker | None] = [None] * self.size
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)  # also at exit

    @property
    def pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [w.pid for w in self._workers if w is not None and w.alive]

    def start(self) -> ProcessPool:
        """Start every worker now (else on first use); returns the pool."""
        with self._lock:
            if self._closed:
                raise BackendError("this process pool is closed")
            for index, worker in enumerate(self._workers):
                if worker is None or not worker.alive:
                    self._workers[index] = _Worker(index)
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every worker has imported litellm and can take cells (True), or ``timeout`` s passed."""
        self.start()
        return all(w.ready.wait(timeout) for w in self._workers if w is not None)

    def _pick(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise BackendError("this process pool is closed (executor.close()): make a new executor")
            for index, worker in enumerate(self._workers):
                if worker is None or not worker.alive:
                    self._workers[index] = _Worker(index)
            live = [w for w in self._workers if w is not None]
            return min(live, key=lambda w: len(w.links))

    def cell(self, key: str, blob: bytes, col: int, prompt: Any) -> RemoteBody:
        """The body of one cell's run: sent to the least-loaded worker, its events adopted here."""

        async def body(call: RemoteCall) -> None:
            link = _Link(call, asyncio.get_running_loop())
            worker = self._pick()
            worker.submit(key, blob, CellJob(key, col, prompt, call.run_id, call.owner, call.tags), link)
            try:
                await asyncio.shield(link.ended)
            except asyncio.CancelledError:
                worker.post(("cancel", call.run_id))
                try:  # the worker's own ending (its steps closed there) is better than one made here
                    await asyncio.wait_for(asyncio.shield(link.ended), CANCEL_GRACE_S)
                except (Exception, asyncio.CancelledError):  # noqa: BLE001 — ended here then (run/remote.py)
                    pass
                raise
            finally:
                worker.forget(call.run_id)

        return body

    def close(self) -> None:
        """Stop every worker (bounded); cells still in flight end ``failed`` (``WorkerLost``)."""
        with self._lock:
            self._closed = True
        self._finalizer()

    def __repr__(self) -> str:
        return f"ProcessPool(workers={self.size}, live={len(self.pids)})"


def _stop_all(workers: list[_Worker | None]) -> None:
    for worker in workers:
        if worker is not None:
            worker.stop()
