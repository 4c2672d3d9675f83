"""Host ports: optional hooks the loop calls at fixed, named points.

Each port has a working default, so the loop never checks for a missing one.
The tool gate is asked before every tool call (the permission ``Policy`` is one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Decision = Literal["allow", "deny"]
Action = Literal["allow", "ask", "deny"]


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call about to run: which run, which tool, the validated arguments."""

    run_id: str
    agent: str
    step: int
    call_id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str
    default_permission: Action | None = None


@dataclass(frozen=True)
class GateVerdict:
    """A gate's answer: allow, deny, or ask (with who answers and how long to wait)."""

    action: Action
    rule: str | None = None
    by: str = "policy"
    on_ask: Callable[[ToolCallRequest], Any] | None = None
    timeout_s: float | None = None
    approver: str = "auto"  # "code": wait for run.approve()/deny() from code, in scripts too


class ToolGate(Protocol):
    """Decides whether a tool call may run."""

    async def decide(self, request: ToolCallRequest) -> GateVerdict: ...


def default_gate() -> ToolGate:
    """An empty ``Policy``: everything allowed except what a tool itself marks ask/deny."""
    from executus_nb.tool.policy import Policy

    return Policy()


class EventSink(Protocol):
    """Receives every event of every run, in order (usage and trace sinks are event sinks)."""

    def on_event(self, event: Any) -> None: ...


@dataclass
class Ports:
    """The host ports of an executor; every one is optional."""

    gate: ToolGate = field(default_factory=default_gate)
    sinks: list[EventSink] = field(default_factory=list)
