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

    @property
    def is_final(self) -> bool:
        """True once the run can no longer change."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)

    def __str__(self) -> str:
        return self.value
