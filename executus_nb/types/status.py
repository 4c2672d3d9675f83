"""The states a run can be in."""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """Where a run stands; every status after ``running`` is final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MAX_STEPS = "max_steps"
    TIMEOUT = "timeout"
    STOPPED = "stopped"  # a hook raised StopRun
    BUDGET_REFUSED = "budget_refused"  # refused before any model call: the budget left could not fit it
    BUDGET_EXCEEDED = "budget_exceeded"  # stopped before a model call that would pass the budget

    @property
    def is_final(self) -> bool:
        """True once the run can no longer change."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)

    def __str__(self) -> str:
        return self.value
