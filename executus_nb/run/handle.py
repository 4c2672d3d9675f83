"""``Run``: the handle of a run in progress — wait, await, cancel, events and DataFrames.

In Jupyter the run is a task on the kernel's loop, so the cell returns at once;
in a script it runs on a background loop and ``wait()`` blocks.  Cancel may be
called from any thread (a widget callback): it is handed to the run's loop
with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from executus_nb.errors import UserError
from executus_nb.run.approval import ApprovalRequest, Approvals
from executus_nb.run.log import RunLog
from executus_nb.run.stream import atexts, drive, stream, stream_sync, texts
from executus_nb.types.events import Event, RunFinished, RunStarted, run_ended
from executus_nb.types.fold import fold
from executus_nb.types.result import RunResult
from executus_nb.types.status import RunStatus
from executus_nb.types.stream import TextDelta

if TYPE_CHECKING:
    import pandas as pd

    from executus_nb.agent import Agent


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Run:
    """A started run.  ``result`` is None until it finishes; ``wait()`` or ``await run`` give it."""

    def __init__(
        self,
        run_id: str,
        agent: Agent,
        prompt: str | list[dict[str, Any]],
        model: str,
        log: RunLog,
        body: Callable[[Run], Awaitable[None]],
        approvals: Approvals | None = None,
    ):
        self.run_id = run_id
        self.agent = agent
        self.prompt = prompt
        self.model = model
        self.log = log
        self.approvals = approvals or Approvals(interactive=lambda: False)
        self.result: RunResult | None = None
        self._body = body
        self._future: concurrent.futures.Future[RunResult] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._started = False
        self._cancel_requested = False
        self._view: Any = None
        self._printed = False  # a terminal wait() prints the run once
        self._unsubscribe = log.subscribe(self._on_event)  # first subscriber: result is set before views hear

    @classmethod
    def ended(cls, agent: Agent, log: RunLog) -> Run:
        """The handle of a run whose log has already ended (read back from a store): done, its result that log's."""
        events = log.events
        if not run_ended(events):
            raise UserError(f"run {log.identity.run_id} has not finished: resume it instead")
        started = events[0]

        async def nothing(run: Run) -> None:
            return None

        run = cls(
            log.identity.run_id,
            agent,
            started.prompt if isinstance(started, RunStarted) else "",
            started.model if isinstance(started, RunStarted) else "",
            log,
            nothing,
        )
        # sets the result, as a RunFinished heard live would (a Delivered may follow it)
        run._on_event(next(ev for ev in reversed(events) if isinstance(ev, RunFinished)))
        run._future.set_result(run.result)  # type: ignore[arg-type]
        return run

    # -- lifecycle -----------------------------------------------------------------
    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the run as a task on ``loop`` (the caller's running loop, or the background one)."""
        self._loop = loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._task = loop.create_task(self._main())
        else:
            asyncio.run_coroutine_threadsafe(self._main(), loop)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, RunFinished):
            self.result = RunResult.from_events(self.log.events)
            self._unsubscribe()
            self.approvals.close()

    async def _main(self) -> RunResult:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._started = True
        if self._cancel_requested:  # cancel() came before this task first ran
            self._cancel_in_loop()
        try:
            await self._body(self)
        finally:
            if self.result is not None:
                if not self._future.done():
                    self._future.set_result(self.result)
            elif not self._future.done():
                self._future.set_exception(UserError(f"run {self.run_id} ended before it started"))
        return self.result  # type: ignore[return-value]

    def cancel(self) -> bool:
        """Ask the run to stop (status ``cancelled``, steps so far kept); safe from any thread."""
        if self._future.done():
            return False
        self._cancel_requested = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel_in_loop)
        return True

    def approve(self, call_id: str | None = None, *, always: bool = False) -> bool:
        """Allow a tool call waiting for approval (the oldest if no ``call_id``); any thread.

        Returns True; with no such call waiting it raises ``NoPendingApproval``.
        """
        self.approvals.answer(call_id, "allow", by="user", always=always)
        return True

    def deny(self, call_id: str | None = None) -> bool:
        """Deny a tool call waiting for approval (the oldest if no ``call_id``); any thread.

        Returns True; with no such call waiting it raises ``NoPendingApproval``.
        """
        self.approvals.answer(call_id, "deny", by="user")
        return True

    @property
    def pending_approvals(self) -> list[ApprovalRequest]:
        """The tool calls waiting for an answer now, oldest first (call_id, name, arguments, rule)."""
        return [p.public() for p in self.approvals.waiting()]

    def wait_for_approval(self, timeout: float | None = None) -> ApprovalRequest | None:
        """Block until a tool call waits for an answer and return it (the oldest waiting); any thread.

        Returns None once the run has finished; raises ``TimeoutError`` if nothing asks within
        ``timeout`` s.  In a script this needs ``Policy(..., approver="code")``, else an ask is denied at once.
        """
        if self._loop is not None and _running_loop() is self._loop:
            raise UserError(
                "wait_for_approval() would block the loop the run needs: call it from another "
                "thread, or check run.pending_approvals after an await"
            )
        return self.approvals.wait_for_request(timeout)

    def _cancel_in_loop(self) -> None:
        task = self._task
        if self._started and task is not None and not task.done() and not task.cancelling():
            task.cancel()

    # -- waiting -------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the run lives on (None until it is scheduled): hand work for the run to it with
        ``loop.call_soon_threadsafe`` (widget callbacks do)."""
        return self._loop

    @property
    def done(self) -> bool:
        """True once the run has finished (its result is set)."""
        return self.result is not None

    def wait(self, timeout: float | None = None, *, quiet: bool = False) -> RunResult:
        """Block until the run finishes and return its result (works inside Jupyter too).

        In a terminal the first non-quiet wait prints one line per step (the steps so far
        replayed, so a run that finished before ``wait()`` is printed too) unless ``quiet=True``.
        """
        from executus_nb.run.jupyter import in_notebook

        printer = None
        if not quiet and not self._printed and not in_notebook():
            from executus_nb.nb.console import StepPrinter

            self._printed = True
            printer = StepPrinter(self.log)
        try:
            if self._future.done():
                return self._future.result()
            return self._wait(timeout)
        finally:
            if printer is not None:
                printer.close()

    def _wait(self, timeout: float | None) -> RunResult:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self._loop:
            # The run lives on the loop this code runs in (a notebook cell):
            # re-enter the loop to drive it instead of deadlocking.
            import nest_asyncio2

            nest_asyncio2.apply(running)
            # shield: a timed-out wait must not cancel the result future of a run that goes on
            waiter = asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._future)), timeout)
            try:
                return running.run_until_complete(waiter)
            except TimeoutError:
                raise TimeoutError(self._not_yet(timeout)) from None
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(self._not_yet(timeout)) from None

    # -- streaming -----------------------------------------------------------------
    def stream(self) -> AsyncIterator[Event | TextDelta]:
        """``async for item in run.stream()``: the run's events as they happen, with a ``TextDelta`` per chunk
        of a streamed model call.

        Works on any loop (the run may live on another).  A late reader first gets the events so far (and
        the text of a step in flight); it ends after ``RunFinished`` and raises nothing the run recorded.
        """
        return stream(self.log, self._future)

    def text_stream(self) -> Iterator[str]:
        """``for text in run.text_stream()`` in sync code: the run's text as it arrives; ends when the run ends.

        A step that was not streamed gives its text when it finishes.  In a notebook cell (the run on the
        kernel's loop) the loop is re-entered as ``wait()`` does, so the run goes on meanwhile.
        """
        running = _running_loop()
        if running is not None and running is self._loop:
            import nest_asyncio2

            return drive(running, atexts(stream(self.log, self._future)), lambda: nest_asyncio2.apply(running))
        return texts(stream_sync(self.log, self._future))

    def _not_yet(self, timeout: float | None) -> str:
        return f"run {self.run_id} has not finished after {timeout} s; it goes on — wait again or cancel()"

    def __await__(self) -> Generator[Any, None, RunResult]:
        """``await run`` gives the result on any event loop, not only the run's own (a script's code awaiting
        a run of the background loop, a fan-out gathering its cells)."""
        # shield: a cancelled or timed-out awaiter must not cancel the run's result future
        return asyncio.shield(asyncio.wrap_future(self._future)).__await__()

    # -- projections ---------------------------------------------------------------
    @property
    def events(self) -> list[Any]:
        """The run's events so far (a copy)."""
        return list(self.log.events)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far as litellm/OpenAI message dicts (the whole one once finished), secrets redacted."""
        if self.result is not None:
            return list(self.result.messages)
        return fold(self.log.events).messages

    @property
    def conversation_id(self) -> str:
        """The conversation this run belongs to (shared by every run continuing it; its own id if it starts one)."""
        return self.log.identity.conversation_id

    @property
    def parent_run_id(self) -> str | None:
        """The run this one continues (``history=``), None if it starts its conversation."""
        return self.log.identity.parent_run_id

    @property
    def status(self) -> RunStatus:
        if self.result is not None:
            return self.result.status
        started = any(isinstance(ev, RunStarted) for ev in self.log.events[:1])
        return RunStatus.RUNNING if started else RunStatus.QUEUED

    def steps_df(self) -> pd.DataFrame:
        """One row per model call and per tool call (see ``executus_nb.frames.steps_df``)."""
        from executus_nb.frames import steps_df

        return steps_df(self.log.events)

    def tool_calls_df(self) -> pd.DataFrame:
        """One row per tool call (see ``executus_nb.frames.tool_calls_df``)."""
        from executus_nb.frames import tool_calls_df

        return tool_calls_df(self.log.events)

    def usage_df(self) -> pd.DataFrame:
        """Usage per model (see ``executus_nb.frames.usage_df``)."""
        from executus_nb.frames import usage_df

        return usage_df(self.log.events)

    # -- notebook display ------------------------------------------------------------
    def view(self) -> Any:
        """The run's live ``RunView`` (created once, on first use; imports ipywidgets)."""
        if self._view is None:
            from executus_nb.nb.runview import RunView

            self._view = RunView(self)
        return self._view

    def _ipython_display_(self) -> None:
        from executus_nb.nb.display import show

        show(self.view())

    def __repr__(self) -> str:
        if self.result is not None:
            return f"Run({self.result!r})"
        return f"Run(run_id={self.run_id!r}, agent={self.agent.name!r}, status={self.status.value})"
