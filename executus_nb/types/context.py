"""``RunContext`` and the records hooks are handed: what a run is, what it carries, what it asks next.

Hooks receive the run's context at every named point; a tool whose first parameter is
annotated ``ctx: RunContext`` receives it too.  These are plain typed records (no I/O).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from executus_nb.types.fold import RunFold
from executus_nb.types.handles import AgentDefinition
from executus_nb.types.identity import RunIdentity
from executus_nb.types.usage import Usage

__all__ = [
    "CURRENT_TOOL_CALL",
    "HOOK_POINTS",
    "ModelRequest",
    "ModelResponse",
    "RunContext",
    "RunIdentity",
    "ToolResult",
    "hook_problem",
]

CURRENT_TOOL_CALL: ContextVar[tuple[int, str] | None] = ContextVar("executus_tool_call", default=None)
"""The (step, call_id) of the tool call the current task runs, set by the loop: a sub-run names its step by it."""


HOOK_POINTS = (
    "before_run",
    "before_model_call",
    "after_model_call",
    "before_tool_call",
    "after_tool_call",
    "on_final",
    "after_run",
)


def hook_problem(hook: Any) -> str | None:
    """Why ``hook`` cannot be a hook (a class, or no hook method at all), or None if it can."""
    if isinstance(hook, type):
        return f"hook {hook.__name__} is a class; pass an instance ({hook.__name__}())"
    if not any(callable(getattr(hook, point, None)) for point in HOOK_POINTS):
        return f"{hook!r} is not a hook: give it one or more of {', '.join(HOOK_POINTS)}"
    return None


@dataclass(eq=False)
class RunContext:
    """What a run knows about itself, handed to hooks and to tools that ask for ``ctx: RunContext``.

    ``deps`` is whatever the caller passed to ``run(..., deps=)``; ``messages`` is the
    conversation so far (the live list the next request is built from); ``step`` the last
    step number given out; ``budget_left`` the tightest budget left per limit (``{"max_usd": 0.42}``,
    ``{}`` when no budget binds the run), updated before and after each model call.  ``agent`` is the
    run's ``Agent``, typed by what it exposes (``AgentDefinition``: this layer sits below the agent's).
    ``spawn(agent, prompt)`` (set by the executor) runs another agent as a sub-run of this run and
    returns its ``RunResult``: its parent is this run, its budget this run's too, and cancelling this run
    cancels it (``agent.as_tool()`` uses it).
    """

    identity: RunIdentity
    agent: AgentDefinition
    deps: Any = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    turn: int = 0
    budget_left: dict[str, float] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list, repr=False)  # the run's log (read it, never append)
    spawn: Callable[[Any, Any], Awaitable[Any]] | None = field(default=None, repr=False)
    _fold: RunFold | None = field(default=None, init=False, repr=False)  # folded so far: O(new events) per read
    _folded: int = field(default=0, init=False, repr=False)

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    @property
    def usage(self) -> Usage:
        """Tokens and cost of the model calls made so far (only events new since the last read are folded)."""
        if self._fold is None:
            self._fold = RunFold()
        events = self.events
        for ev in events[self._folded : len(events)]:
            self._fold.add(ev)
        self._folded = len(events)
        return self._fold.usage


@dataclass
class ModelRequest:
    """The next model call, handed to ``before_model_call``: change ``messages`` in place or return a new one.

    The messages a hook leaves here are sent, and become the run's conversation from then
    on (a compaction is kept); ``tools`` are the tool schemas offered with it.
    """

    step: int
    turn: int
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]


@dataclass(frozen=True)
class ModelResponse:
    """A finished model call, handed to ``after_model_call``: the assistant message and its usage."""

    step: int
    turn: int
    model: str
    message: dict[str, Any]
    usage: Usage
    finish_reason: str | None = None

    @property
    def content(self) -> str:
        return self.message.get("content") or ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])


class ToolResult(str):
    """The text a tool call gave the model (a ``str``), with ``error`` set when the call failed or was denied."""

    error: Any
    truncated: bool

    def __new__(cls, text: str, error: Any = None, truncated: bool = False) -> ToolResult:
        self = super().__new__(cls, text)
        self.error = error
        self.truncated = truncated
        return self

    @property
    def ok(self) -> bool:
        return self.error is None
