"""Fan-out past one core: a fan-out's cells on worker processes (``processes``), a Dask or a Ray cluster.

The parent keeps every cell's handle, log, bounds (the fan-out's ``concurrency`` and ``per_key``, the
executor's provider limits: a cell holds its slots here while a worker runs it), sinks and store; a
backend runs the agents in workers and streams their events back (``executus_nb.run.remote``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from executus_nb.agent import Agent
from executus_nb.errors import BackendError
from executus_nb.run.remote import RemoteBody
from executus_nb.scale.processes import ProcessPool
from executus_nb.scale.ray import RayBackend
from executus_nb.scale.setup import build_setup, pack

__all__ = ["Backend", "ProcessPool", "RayBackend", "RemoteCells", "backend_for", "remote_cells"]

BACKEND_NAMES = ("local", "processes", "ray")


class Backend(Protocol):
    """Where a fan-out's cells run: ``cell()`` gives the body of one cell's run; ``close()`` stops its workers."""

    name: str

    def cell(self, key: str, blob: bytes, col: int, prompt: Any) -> RemoteBody: ...

    def close(self) -> None: ...


def backend_for(backend: Any, pools: dict[Any, Backend]) -> Backend | None:
    """The backend ``backend`` names (None for ``"local"``), made once per executor and kept in ``pools``."""
    if backend is None or backend == "local":
        return None
    if isinstance(backend, str):
        if backend not in pools:
            if backend == "processes":
                pools[backend] = ProcessPool()
            elif backend == "ray":
                pools[backend] = RayBackend()
            else:
                raise BackendError(
                    f"unknown fan-out backend {backend!r}: choose one of {', '.join(BACKEND_NAMES)}, "
                    "a dask.distributed Client, a ProcessPool(workers=...) or a RayBackend(...)"
                )
        return pools[backend]
    if callable(getattr(backend, "cell", None)) and callable(getattr(backend, "close", None)):
        return backend  # a ProcessPool(workers=...) or another Backend: the caller's, closed by the caller
    if type(backend).__module__.startswith("distributed") and hasattr(backend, "submit"):
        key = ("dask", id(backend))
        if key not in pools:
            from executus_nb.scale.dask import DaskBackend

            pools[key] = DaskBackend(backend)
        return pools[key]
    raise BackendError(
        f"fanout(backend=...) takes 'local', 'processes', 'ray', a dask.distributed Client, a ProcessPool or a RayBackend, "
        f"not {type(backend).__name__}"
    )


@dataclass
class RemoteCells:
    """A fan-out's cells on a backend: its setup packed once, and one body per cell."""

    backend: Backend
    key: str
    blob: bytes

    def cell(self, col: int, prompt: Any) -> RemoteBody:
        return self.backend.cell(self.key, self.blob, col, prompt)


def remote_cells(backend: Backend, executor: Any, columns: list[Any], per_run: dict[str, Any]) -> RemoteCells:
    """Pack a fan-out for ``backend`` (a ``BackendError`` naming what cannot go, before any cell starts)."""
    if not all(isinstance(column, Agent) for column in columns):
        raise BackendError(
            f"a pipeline's phases run in this process: fan pipelines out on backend='local', not {backend.name!r}"
        )
    if getattr(executor, "budget", None) is not None:
        raise BackendError(
            "the executor's budget is one ledger in this process, which worker processes cannot charge: "
            "give each cell its own with fanout(budget=...), or use backend='local'"
        )
    gate = getattr(getattr(executor, "ports", None), "gate", None)
    if getattr(gate, "approver", None) == "code":
        raise BackendError(
            "Policy(approver='code') waits for run.approve() in this process, which a run in a worker cannot "
            "hear: answer the asks with Policy(on_ask=...), or use backend='local'"
        )
    return RemoteCells(backend, uuid.uuid4().hex[:12], pack(build_setup(executor, columns, per_run)))
