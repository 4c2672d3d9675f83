"""Host ports: optional hooks the loop calls at fixed, named points.

Each port has a working default, so the loop never checks for a missing one.
The tool gate is asked before every tool call (the permission ``Policy`` is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from executus_nb.tool.policy import Policy
from executus_nb.types.gate import Action, Decision, GateVerdict, ToolCallRequest

__all__ = ["Action", "Decision", "EventSink", "GateVerdict", "Ports", "ToolCallRequest", "ToolGate", "default_gate"]


class ToolGate(Protocol):
    """Decides whether a tool call may run."""

    async def decide(self, request: ToolCallRequest) -> GateVerdict: ...


def default_gate() -> ToolGate:
    """An empty ``Policy``: everything allowed except what a tool itself marks ask/deny."""
    return Policy()


class EventSink(Protocol):
    """Receives every event of every run, in order (usage and trace sinks are event sinks)."""

    def on_event(self, event: Any) -> None: ...


@dataclass
class Ports:
    """The host ports of an executor; every one is optional."""

    gate: ToolGate = field(default_factory=default_gate)
    sinks: list[EventSink] = field(default_factory=list)
