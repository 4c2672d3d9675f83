"""Host ports: optional hooks the loop calls at fixed, named points.

Each port has a no-op default, so the loop never checks for a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Decision = Literal["allow", "deny"]


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


@dataclass(frozen=True)
class GateVerdict:
    """A gate's answer: the decision, the rule that made it and who decided."""

    decision: Decision
    rule: str | None = None
    by: str = "policy"
    ask: bool = False


class ToolGate(Protocol):
    """Decides whether a tool call may run (the permission policy plugs in here)."""

    async def decide(self, request: ToolCallRequest) -> GateVerdict: ...


class AllowAll:
    """The default gate: every tool call runs."""

    async def decide(self, request: ToolCallRequest) -> GateVerdict:
        return GateVerdict("allow", rule=None, by="default")


@dataclass
class Ports:
    """The host ports of an executor; every one is optional."""

    gate: ToolGate = field(default_factory=AllowAll)
