"""What the layers above read of an agent, a run and a fan-out, stated as ``Protocol``\\ s (no I/O).

The tables (``frames``) and the views (``nb``) type against these, never against ``Run``,
``Fanout`` or ``Agent`` themselves: those point up to the views (a ``run.view()`` shim), so
importing them back would tie the layers in a circle.  ``Agent``, ``Run`` and ``Fanout``
satisfy them structurally.  It is also what lets the tables work on any object shaped like a
run, such as a run loaded back from a store (a ``RunRecord``), not only on a live ``Run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from executus_nb.types.budget import Budget
from executus_nb.types.events import Event
from executus_nb.types.gate import Decision, ToolCallRequest
from executus_nb.types.result import RunResult
from executus_nb.types.status import RunStatus

__all__ = [
    "AgentDefinition",
    "ApprovalDesk",
    "EventRecord",
    "FanoutCell",
    "FanoutHandle",
    "LiveLog",
    "RunHandle",
    "RunRecord",
    "WaitingCall",
]


@runtime_checkable
class AgentDefinition(Protocol):
    """What a run's context exposes of its agent (an ``Agent`` is one): its name, instructions, tools, bounds.

    The model of each call is on the request a hook is handed (``ModelRequest.model``).
    """

    @property
    def name(self) -> str: ...
    @property
    def instructions(self) -> str | Callable[[Any], str]: ...
    @property
    def tools(self) -> list[Any]: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def max_steps(self) -> int: ...
    @property
    def max_runtime_s(self) -> float | None: ...
    @property
    def output_type(self) -> Any: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def hooks(self) -> tuple[Any, ...]: ...
    @property
    def budget(self) -> Budget | None: ...


class EventRecord(Protocol):
    """A run's log as the tables read it: the events, in order."""

    @property
    def events(self) -> list[Event]: ...


class LiveLog(EventRecord, Protocol):
    """A live run's log as the views read it: the events, the text streamed so far, and change notices."""

    @property
    def partial(self) -> Mapping[int, str]: ...
    def subscribe(self, notify: Callable[[Any], None], *, replay: bool = False) -> Callable[[], None]: ...
    def watch_text(self, notify: Callable[[int], None]) -> Callable[[], None]: ...


class WaitingCall(Protocol):
    """A tool call waiting for a person's answer."""

    @property
    def request(self) -> ToolCallRequest: ...


class ApprovalDesk(Protocol):
    """A run's approvals as its view answers them: what waits, and an answer (a second answer is a no-op)."""

    def waiting(self) -> Sequence[WaitingCall]: ...
    def resolve(self, call_id: str | None, decision: Decision, *, by: str = "user", always: bool = False) -> bool: ...


@runtime_checkable
class RunRecord(Protocol):
    """A run as the tables read it (``runs_df``): identity, model, status, log and result (None until done)."""

    @property
    def run_id(self) -> str: ...
    @property
    def agent(self) -> AgentDefinition: ...
    @property
    def model(self) -> str: ...
    @property
    def status(self) -> RunStatus: ...
    @property
    def log(self) -> EventRecord: ...
    @property
    def result(self) -> RunResult | None: ...


@runtime_checkable
class RunHandle(RunRecord, Protocol):
    """A live run as its view drives it: the above, plus its prompt, loop, approvals, ``cancel()`` and its own view."""

    @property
    def prompt(self) -> Any: ...
    @property
    def log(self) -> LiveLog: ...
    @property
    def done(self) -> bool: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...
    @property
    def approvals(self) -> ApprovalDesk: ...
    def cancel(self) -> bool: ...
    def view(self) -> Any: ...


class FanoutCell(Protocol):
    """One cell of a fan-out's grid: where it sits, and its run."""

    @property
    def row(self) -> int: ...
    @property
    def col(self) -> int: ...
    @property
    def run(self) -> RunHandle: ...


@runtime_checkable
class FanoutHandle(Protocol):
    """A fan-out as its grid reads and drives it: headings, cells row by row, counts, changes, cancel."""

    @property
    def prompts(self) -> Sequence[str]: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def cells(self) -> Sequence[FanoutCell]: ...
    @property
    def runs(self) -> Sequence[RunHandle]: ...
    def counts(self) -> dict[str, int]: ...
    def oldest_wait_s(self) -> float: ...
    def subscribe(self, notify: Callable[[int, Any], None]) -> Callable[[], None]: ...
    def cancel(self) -> int: ...


class ChatHandle(Protocol):
    """A conversation as its view drives it: its agent and turns, ``send`` for the next one, and ``subscribe``
    to hear every turn started (in code or from the view)."""

    @property
    def agent(self) -> AgentDefinition: ...
    @property
    def runs(self) -> Sequence[RunHandle]: ...
    def send(self, prompt: Any) -> RunHandle: ...
    def subscribe(self, notify: Callable[[RunHandle], None]) -> Callable[[], None]: ...
