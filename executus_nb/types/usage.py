"""Token and cost accounting for model calls."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from executus_nb.types.fmt import UNKNOWN_TEXT, money


class Usage(BaseModel):
    """Tokens and cost of one or more model calls.

    ``cost_usd`` is NaN when a model has no known price: an unknown cost is
    never reported as a silent zero.
    """

    model_config = ConfigDict(frozen=True)

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            requests=self.requests + other.requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )

    def __repr__(self) -> str:
        cost = money(self.cost_usd, unknown=UNKNOWN_TEXT)
        return (
            f"Usage(requests={self.requests}, prompt_tokens={self.prompt_tokens}, "
            f"completion_tokens={self.completion_tokens}, total_tokens={self.total_tokens}, cost={cost})"
        )

    __str__ = __repr__
