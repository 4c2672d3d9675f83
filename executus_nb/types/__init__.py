"""Typed records of executus_nb: statuses, usage, messages and the event log (no I/O)."""

from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    BudgetStopped,
    Delivered,
    ErrorInfo,
    Event,
    Failover,
    MessagesRewritten,
    ModelCallFinished,
    ModelCallStarted,
    OutputRejected,
    RevisionRequested,
    RunFinished,
    RunStarted,
    StoreFailed,
    ToolCallFinished,
    ToolCallStarted,
)
from executus_nb.types.fold import Marker, ModelCallItem, RunFold, TimelineItem, ToolCallItem
from executus_nb.types.identity import RunIdentity
from executus_nb.types.result import RunResult
from executus_nb.types.status import RunStatus
from executus_nb.types.usage import Usage

__all__ = [
    "ApprovalRequested",
    "ApprovalResolved",
    "BudgetStopped",
    "Delivered",
    "ErrorInfo",
    "Event",
    "Failover",
    "Marker",
    "MessagesRewritten",
    "ModelCallFinished",
    "ModelCallItem",
    "ModelCallStarted",
    "OutputRejected",
    "RevisionRequested",
    "RunFinished",
    "RunFold",
    "RunIdentity",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "StoreFailed",
    "TimelineItem",
    "ToolCallFinished",
    "ToolCallItem",
    "ToolCallStarted",
    "Usage",
]
