"""``Budget``: limits on steps, tokens, dollars and wall time, for a run, an agent or a whole executor."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from executus_nb.errors import ConfigError, config_error, unknown_option

BUDGET_LIMITS = ("max_steps", "max_tokens", "max_usd", "max_runtime_s")
BUDGET_SCOPES = ("run", "agent", "executor")  # narrowest first: a tie between scopes names the narrowest


class Budget(BaseModel):
    """What a run (``run(budget=)``), an agent (``Agent(budget=)``, each of its runs) or an executor
    (``Executor(budget=)``, one ledger shared by all its runs) may spend; None is no limit.

    ``max_steps`` model calls, ``max_tokens`` total tokens, ``max_usd`` US dollars, ``max_runtime_s``
    seconds of wall clock.  A run is bound by the tightest scope that applies, limit by limit.
    A bad value (negative, not a number) is a ``ConfigError`` naming the field.
    """

    # strict: "10" or True is not silently read as a number; allow_inf_nan: None, not inf, means no limit
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    max_steps: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_usd: float | None = Field(default=None, ge=0)
    max_runtime_s: float | None = Field(default=None, ge=0)

    def __init__(
        self,
        max_steps: int | None = None,
        max_tokens: int | None = None,
        max_usd: float | None = None,
        max_runtime_s: float | None = None,
        **unknown: Any,
    ) -> None:
        for key in unknown:  # a typo (max_step=) names the closest limit, as every other configuration does
            raise unknown_option(key, BUDGET_LIMITS, "Budget()")
        # Raised outside the handler, as Agent does: a ConfigError of the package's tree, naming each field.
        try:
            super().__init__(max_steps=max_steps, max_tokens=max_tokens, max_usd=max_usd, max_runtime_s=max_runtime_s)
            return
        except ValidationError as exc:
            error = config_error(exc, "Budget", BUDGET_LIMITS)
        raise error

    @property
    def limits(self) -> dict[str, float]:
        """The limits that are set, by name."""
        return {name: value for name in BUDGET_LIMITS if (value := getattr(self, name)) is not None}


def as_budget(value: object, where: str) -> Budget | None:
    """``value`` as a ``Budget`` (a Budget, a dict of its limits, or None); anything else is a ConfigError."""
    if value is None or isinstance(value, Budget):
        return value
    if isinstance(value, dict):
        return Budget(**value)  # a misspelt limit is an UnknownOptionError naming the closest one
    raise ConfigError(
        f"{where} must be a Budget(max_steps=..., max_tokens=..., max_usd=..., max_runtime_s=...), "
        f"not {type(value).__name__}"
    )
