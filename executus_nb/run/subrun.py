"""Sub-runs: a run started from inside another (an agent used as a tool), bound to its parent.

The executor starts the sub-run (its identity names the parent, its budget hook shares the
parent's scopes); this module awaits it, cancels it when the calling task is cancelled, and
records a ``SubRunFinished`` in the parent's log, so the parent's usage, budget and view hold it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from executus_nb.run.handle import Run
from executus_nb.run.log import RunLog
from executus_nb.types.context import CURRENT_TOOL_CALL
from executus_nb.types.events import SubRunFinished
from executus_nb.types.result import RunResult

# How long a cancelled caller waits for its sub-run to record its ending (the sub-run's own grace
# to stop a step is 0.4 s; a tool task is given 0.25 s before it is let go, so this stays below).
STOP_WAIT_S = 0.2


async def run_subrun(parent: RunLog, start: Callable[[], Run]) -> RunResult:
    """Start the sub-run (``start()`` prepares it) on this loop, await it and record its ending in ``parent``'s
    log, in the tool call this task runs (``CURRENT_TOOL_CALL``)."""
    call = CURRENT_TOOL_CALL.get()
    run = start()
    run._schedule(asyncio.get_running_loop())
    return await await_subrun(parent, run, call)


async def await_subrun(
    parent: RunLog,
    run: Run,
    call: tuple[int, str] | None = None,
    *,
    step: int | None = None,
    stop_wait_s: float = STOP_WAIT_S,
) -> RunResult:
    """Await the started sub-run ``run`` and record its ending in ``parent``'s log (``record_subrun``).

    Cancelling the caller (the parent's cancel, its timeout) cancels the sub-run; its ending is
    still recorded if it comes within ``stop_wait_s``, then the cancellation goes on (a tool call is
    let go soon after, so a sub-run that takes longer to stop is recorded on its own log only).
    """
    try:
        result = await run
    except asyncio.CancelledError:
        run.cancel()
        ended = asyncio.ensure_future(asyncio.wrap_future(run._future))
        await asyncio.wait({ended}, timeout=stop_wait_s)
        if not ended.done():
            ended.cancel()
        record_subrun(parent, run, call, step=step)
        raise
    record_subrun(parent, run, call, step=step)
    return result


def record_subrun(parent: RunLog, run: Run, call: tuple[int, str] | None = None, *, step: int | None = None) -> None:
    """Append ``SubRunFinished`` for the finished ``run`` to ``parent`` (nothing if it has not finished):
    in the tool call ``call`` (step, call_id) that ran it, or at ``step`` (a pipeline's phase)."""
    result = run.result
    if result is None:
        return
    step, call_id = call if call is not None else (step, None)
    parent.emit(
        SubRunFinished,
        step=step,
        call_id=call_id,
        sub_run_id=run.run_id,
        sub_agent=run.agent.name,
        status=result.status,
        usage=result.usage,
        error=result.error,
        events=[ev.model_dump(mode="json") for ev in run.log.events],
    )
