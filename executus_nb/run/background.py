"""A background event loop for scripts, where no loop is running in the caller's thread."""

from __future__ import annotations

import asyncio
import threading

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """A daemon thread's event loop, started on first use and shared by every executor."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="executus-nb-loop", daemon=True)
            thread.start()
            _loop = loop
    return _loop
