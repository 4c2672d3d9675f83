"""Typed records of executus_nb: statuses, usage, messages and the event log (no I/O)."""

from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    Event,
    Failover,
    ModelCallFinished,
    ModelCallStarted,
    OutputRejected,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from executus_nb.types.result import RunResult
from executus_nb.types.status import RunStatus
from executus_nb.types.usage import Usage

__all__ = [
    "ApprovalRequested",
    "ApprovalResolved",
    "ErrorInfo",
    "Event",
    "Failover",
    "ModelCallFinished",
    "ModelCallStarted",
    "OutputRejected",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "ToolCallFinished",
    "ToolCallStarted",
    "Usage",
]
