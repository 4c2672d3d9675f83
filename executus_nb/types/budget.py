"""``Budget``: limits on steps, tokens, dollars and wall time, for a run, an agent or a whole executor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

BUDGET_LIMITS = ("max_steps", "max_tokens", "max_usd", "max_runtime_s")


class Budget(BaseModel):
    """What a run (``run(budget=)``), an agent (``Agent(budget=)``) or an executor (``Executor(budget=)``,
    shared by all its runs) may spend; None is no limit.  A run is bound by the tightest scope that applies.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_steps: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_usd: float | None = Field(default=None, ge=0)
    max_runtime_s: float | None = Field(default=None, ge=0)

    def __init__(self, max_steps: int | None = None, max_tokens: int | None = None,
                 max_usd: float | None = None, max_runtime_s: float | None = None) -> None:
        super().__init__(max_steps=max_steps, max_tokens=max_tokens, max_usd=max_usd, max_runtime_s=max_runtime_s)

    @property
    def limits(self) -> dict[str, float]:
        """The limits that are set, by name."""
        return {name: value for name in BUDGET_LIMITS if (value := getattr(self, name)) is not None}
