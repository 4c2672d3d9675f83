"""The parent's side of the actor backends (Dask, Ray): one actor per worker, which setups it holds, its load.

A fan-out's setup goes to an actor once, before that actor's first cell of the fan-out; the cells that come
meanwhile wait for it (an actor runs calls concurrently: a cell without the setup must not overtake the one
that brings it).  A setup that cannot load fails every cell that waited for it, with the same reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ActorSlot:
    """One worker's actor: its handle, the setups it loaded (or is loading), the cells it runs now."""

    address: str
    handle: Any
    loads: dict[str, concurrent.futures.Future[None]] = field(default_factory=dict)
    running: int = 0


class Retry(Exception):
    """The cell that was loading a setup was cancelled: the next waiter loads it."""


async def ensure_loaded(slot: ActorSlot, key: str, lock: threading.Lock, load: Callable[[], Awaitable[None]]) -> None:
    """Load setup ``key`` on ``slot``'s actor once (``load()``); a concurrent caller waits for that load."""
    while True:
        with lock:
            loading = slot.loads.get(key)
            mine = loading is None
            if loading is None:
                loading = slot.loads[key] = concurrent.futures.Future()
        if not mine:
            try:
                return await asyncio.wrap_future(loading)
            except Retry:
                continue
        try:
            await load()
        except asyncio.CancelledError:
            with lock:
                slot.loads.pop(key, None)
            loading.set_exception(Retry())
            raise
        except BaseException as exc:
            loading.set_exception(exc)
            raise
        loading.set_result(None)
        return


def least_loaded(slots: list[ActorSlot]) -> ActorSlot:
    """The slot running the fewest cells, counted as running one more (call under the backend's lock)."""
    slot = min(slots, key=lambda s: s.running)
    slot.running += 1
    return slot
