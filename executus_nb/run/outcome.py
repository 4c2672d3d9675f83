"""How a run ends: every ending but success is an exception, and this is the one place that reads it.

The loop returns the output or raises; ``ending`` turns what was raised into the run's final
status and error.  An exception says its own status (``RunError.status``: ``MaxStepsExceeded``
→ ``max_steps``, ``RunTimeout`` → ``timeout``, ``RunCancelled`` → ``cancelled``; ``StopRun(status)``
→ its status), so a new outcome is a new exception class, never a new branch in the loop.
"""

from __future__ import annotations

import asyncio

from executus_nb.errors import RunCancelled, RunError, StopRun
from executus_nb.types.events import ErrorInfo
from executus_nb.types.status import RunStatus

CANCELLED = "the run was cancelled"


def ending(exc: BaseException) -> tuple[RunStatus, ErrorInfo]:
    """The final status and error of a run that ended by raising ``exc``.

    Anything that is neither a ``RunError`` nor a ``StopRun`` (a bug, a failing port, someone
    else's ``TimeoutError``) fails the run under its own type name, so nothing is lost.
    """
    if isinstance(exc, asyncio.CancelledError):  # asyncio's signal for cancel(): our RunCancelled
        exc = RunCancelled(CANCELLED)
    if isinstance(exc, StopRun):  # a hook ended the run on purpose; a subclass names itself
        return exc.status, ErrorInfo(type=type(exc).__name__, message=exc.reason)
    if isinstance(exc, RunError):
        return RunStatus(exc.status), ErrorInfo(
            type=exc.error_type,
            message=str(exc),
            provider=getattr(exc, "provider", None),
            status_code=getattr(exc, "status_code", None),
        )
    message = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "")
    return RunStatus.FAILED, ErrorInfo(type=type(exc).__name__, message=message)
