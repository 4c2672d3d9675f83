"""Cost of a model call from litellm's (local) cost map; NaN when the price is unknown."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from executus_nb.errors import ConfigError
from executus_nb.model.backend import litellm
from executus_nb.model.sim import PREFIX as SIM_PREFIX

_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")
_registered: set[str] = set()


def price_entries(prices: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check ``prices`` and build litellm cost-map entries (no litellm import).

    ``prices`` maps a model name to ``{"input_cost_per_token": …, "output_cost_per_token": …}``.
    """
    entries = {}
    for model, price in prices.items():
        missing = [k for k in _PRICE_KEYS if k not in price]
        if missing:
            raise ConfigError(f"price for {model!r} lacks {missing}; give input_cost_per_token and output_cost_per_token")
        provider = model.split("/", 1)[0] if "/" in model else "openai"
        entries[model] = {
            "litellm_provider": provider,
            "mode": "chat",
            "cache_read_input_token_cost": 0.0,
            "cache_creation_input_token_cost": 0.0,
            **price,
        }
    return entries


def register_prices(prices: Mapping[str, Mapping[str, Any]]) -> None:
    """Register per-token prices with litellm for models its cost map lacks (see ``price_entries``)."""
    entries = price_entries(prices)
    if entries:
        litellm().register_model(entries)
        _registered.update(entries)
        _pricing.clear()


# Per model: (input, output) per-token prices when the price is flat, NaN when unknown, None when
# it needs litellm's full cost function (tiered prices).  Asking litellm costs ~0.1 ms a call.
_pricing: dict[str, tuple[float, float] | float | None] = {}
_NO_PRICE = math.nan


def _pricing_of(model: str) -> tuple[float, float] | float | None:
    if model not in _pricing:
        try:
            info = litellm().get_model_info(model)
        except Exception:  # litellm raises plain Exceptions for unmapped models
            _pricing[model] = _NO_PRICE
        else:
            flat = not any("above" in key for key in info) and info.get("input_cost_per_token") is not None \
                and info.get("output_cost_per_token") is not None
            _pricing[model] = (float(info["input_cost_per_token"]), float(info["output_cost_per_token"])) \
                if flat else None
    return _pricing[model]


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """The price of a call in US dollars; 0 for unpriced ``sim/`` models, NaN for other unknown models."""
    if model.startswith(SIM_PREFIX) and model not in _registered:
        return 0.0
    pricing = _pricing_of(model)
    if isinstance(pricing, tuple):
        return prompt_tokens * pricing[0] + completion_tokens * pricing[1]
    if isinstance(pricing, float):
        return math.nan
    try:
        prompt_cost, completion_cost = litellm().cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises plain Exceptions for unmapped models
        return math.nan
    return float(prompt_cost) + float(completion_cost)
