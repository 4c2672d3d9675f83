"""The event loop MCP sessions live on: one daemon thread, whatever loop a run is on.

The MCP SDK holds a session in anyio task groups, which must be entered and left in one
task; a run may be on the kernel's loop, the background loop or a loop of ``asyncio.run``
that is gone by the next call.  So every session is one long-lived task on this loop and
callers reach it through ``hosted()``.  At interpreter exit every live server is closed
(its child process stopped) before the loop is.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

EXIT_S = 5.0
"""How long interpreter exit waits for the live MCP servers to close (each is stopped at once)."""

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_live: weakref.WeakSet[Any] = weakref.WeakSet()  # servers with a session open, closed at exit
_registered = False


class Closable(Protocol):
    async def _aclose(self) -> None: ...


def host_loop() -> asyncio.AbstractEventLoop:
    """The MCP sessions' loop, started on first use in a daemon thread."""
    global _loop, _registered
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="executus-nb-mcp", daemon=True).start()
            _loop = loop
            if not _registered:
                atexit.register(_close_all)
                _registered = True
        return _loop


def on_host_loop() -> bool:
    """True when called from a task of the sessions' loop."""
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


async def hosted(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the sessions' loop from any loop; cancelling the caller cancels it there."""
    loop = host_loop()
    if on_host_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def blocking(coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
    """Run ``coro`` on the sessions' loop and wait for it from sync code (never from that loop itself)."""
    if on_host_loop():
        coro.close()
        raise RuntimeError("a blocking MCP call from the MCP loop itself would wait for itself")
    return asyncio.run_coroutine_threadsafe(coro, host_loop()).result(timeout)


def track(server: Closable) -> None:
    """Remember a server whose session is open, so exit closes it."""
    _live.add(server)


def untrack(server: Closable) -> None:
    _live.discard(server)


def _close_all() -> None:
    """Close every live server (bounded by ``EXIT_S``), then stop the loop."""
    with _lock:
        loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    servers = list(_live)

    async def close_all() -> None:
        await asyncio.wait([asyncio.ensure_future(s._aclose()) for s in servers], timeout=EXIT_S)

    if servers:
        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(EXIT_S + 0.5)
        except Exception:  # noqa: BLE001 — exit goes on whatever a server did (its child has its own session)
            _log.debug("MCP servers still closing at exit", exc_info=True)
    loop.call_soon_threadsafe(loop.stop)
