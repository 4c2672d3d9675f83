"""The tool gate's vocabulary: a tool-call request and the verdicts and decisions on it.

Shared by the tool layer (``Policy``) and the run layer (the loop, hooks, approvals),
so it lives here, below both (no I/O).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
