"""A run executed elsewhere (a fan-out cell on a worker process or a Dask worker), mirrored in this process.

The run's handle, log, bounds, sinks and store stay here; a backend (``executus_nb.scale``) runs the agent
in a worker and streams its events back, which this log adopts.  Whatever way the remote side ends — it
finishes, the worker dies, the cell is cancelled and the worker does not answer in time — the log here ends
with a ``RunFinished`` that says so: nothing waits for a run that no worker is running any more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executus_nb.errors import RunCancelled, WorkerLost
from executus_nb.run.log import RunLog
from executus_nb.run.loop import prompt_text
from executus_nb.run.outcome import CANCELLED, ending
from executus_nb.types.events import (
    Event,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    run_ended,
)
from executus_nb.types.result import sum_usage

if TYPE_CHECKING:
    from executus_nb.agent import Agent


@dataclass
class RemoteCall:
    """What a backend is given to run one cell elsewhere: the run's identity, and ``adopt`` for its events.

    ``done`` is set by the backend once the remote run's ``RunFinished`` has been adopted."""

    run_id: str
    owner: str | None
    tags: tuple[str, ...]
    log: RunLog
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def adopt(self, events: list[Event]) -> None:
        """Take events the worker recorded (in order; called on the run's loop)."""
        self.log.adopt(events)
        if run_ended(self.log.events):
            self.done.set()


RemoteBody = Callable[[RemoteCall], Awaitable[None]]
"""A backend's way to run one cell: send it, adopt its events, return once ``done`` (or raise ``WorkerLost``)."""


async def run_elsewhere(log: RunLog, agent: Agent, prompt: Any, model: str, body: RemoteBody) -> None:
    """Run one cell through ``body`` and make sure the log ends, whatever happened to the worker."""
    identity = log.identity
    call = RemoteCall(identity.run_id, identity.owner, tuple(identity.tags), log)
    reason: BaseException | None = None
    try:
        await body(call)
    except asyncio.CancelledError:
        reason = RunCancelled(CANCELLED)  # the backend forwarded it and waited (bounded) for the worker's end
    except Exception as exc:  # noqa: BLE001 — a dead worker, a cell the worker could not load: recorded below
        reason = exc
    if not run_ended(log.events):
        end_here(log, agent, prompt, model, reason or WorkerLost("the worker ended without finishing the run"))


def end_here(log: RunLog, agent: Agent, prompt: Any, model: str, reason: BaseException) -> None:
    """End a mirrored run in this process: started if it never was, its open steps closed, finished with ``reason``."""
    status, error = ending(reason)
    if not log.events:
        log.emit(
            RunStarted,
            prompt=prompt_text(prompt),
            model=model,
            messages=[],
            tools=[],
            max_steps=agent.max_steps,
            max_runtime_s=agent.max_runtime_s,
        )
    open_models = {e.step: e for e in log.events if isinstance(e, ModelCallStarted)}
    open_tools = {e.step: e for e in log.events if isinstance(e, ToolCallStarted)}
    for event in log.events:
        if isinstance(event, ModelCallFinished):
            open_models.pop(event.step, None)
        elif isinstance(event, ToolCallFinished):
            open_tools.pop(event.step, None)
    for step, started in sorted(open_models.items()):
        log.emit(ModelCallFinished, step=step, turn=started.turn, model=started.model, error=error)
    for step, tool in sorted(open_tools.items()):
        log.emit(
            ToolCallFinished,
            step=step,
            turn=tool.turn,
            call_id=tool.call_id,
            name=tool.name,
            result=f"Error: {error.message}",
            error=error,
        )
    steps = max((getattr(e, "step", 0) for e in log.events), default=0)
    log.emit(RunFinished, status=status, error=error, usage=sum_usage(log.events), steps=steps)
