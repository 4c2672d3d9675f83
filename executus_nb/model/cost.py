"""Cost of a model call: the executor's own price table, else litellm's (local, read-only) cost map, else NaN.

Prices given to one ``Executor`` belong to it alone: nothing here writes litellm's
process-wide cost map (no ``register_model``), so executors never see each other's prices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from executus_nb.errors import ConfigError
from executus_nb.model.backend import litellm
from executus_nb.model.sim import PREFIX as SIM_PREFIX

Price = tuple[float, float]
"""Per-token prices in US dollars: (input, output)."""

_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")
# Descriptive keys of a litellm cost-map entry, accepted (and unused) so an entry can be pasted as is.
_DESCRIPTIVE_KEYS = frozenset(
    {
        "litellm_provider",
        "mode",
        "max_tokens",
        "max_input_tokens",
        "max_output_tokens",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
    }
)


def price_table(prices: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Price]:
    """Check ``prices`` (model name → ``{"input_cost_per_token": …, "output_cost_per_token": …}``) into a table.

    A missing, unknown, negative or non-numeric price is a ``ConfigError`` (no litellm import).
    """
    table: dict[str, Price] = {}
    for model, price in (prices or {}).items():
        if not isinstance(price, Mapping):
            raise ConfigError(f"price for {model!r} must be a dict with input_cost_per_token and output_cost_per_token")
        missing = [k for k in _PRICE_KEYS if k not in price]
        if missing:
            raise ConfigError(
                f"price for {model!r} lacks {missing}; give input_cost_per_token and output_cost_per_token"
            )
        unknown = sorted(set(price) - set(_PRICE_KEYS) - _DESCRIPTIVE_KEYS)
        if unknown:
            raise ConfigError(
                f"price for {model!r} has unknown keys {unknown}; "
                "give input_cost_per_token and output_cost_per_token (US dollars per token)"
            )
        values = []
        for k in _PRICE_KEYS:
            value = price[k]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(
                    f"price for {model!r}: {k} must be a finite number ≥ 0 (US dollars per token), not {value!r}"
                )
            values.append(float(value))
        table[model] = (values[0], values[1])
    return table


# litellm's map, read only.  Per model: flat (input, output) prices, NaN when unknown, None when it
# needs litellm's full cost function (tiered prices).  Asking litellm costs ~0.1 ms a call, so answers
# are kept until the map changes size (a user's own ``litellm.register_model``).
_pricing: dict[str, Price | float | None] = {}
_map_size = -1


def _litellm_pricing(model: str) -> Price | float | None:
    global _map_size
    lm = litellm()
    size = len(lm.model_cost)
    if size != _map_size:
        _pricing.clear()
        _map_size = size
    if model not in _pricing:
        try:
            info = lm.get_model_info(model)
        except Exception:  # noqa: BLE001 — litellm raises plain Exceptions for unmapped models
            _pricing[model] = math.nan
        else:
            flat = (
                not any("above" in key for key in info)
                and info.get("input_cost_per_token") is not None
                and info.get("output_cost_per_token") is not None
            )
            _pricing[model] = (
                (float(info["input_cost_per_token"]), float(info["output_cost_per_token"])) if flat else None
            )
    return _pricing[model]


def cost_usd(
    model: str, prompt_tokens: int, completion_tokens: int, prices: Mapping[str, Price] | None = None
) -> float:
    """The price of a call in US dollars.

    From ``prices`` (the executor's table, see ``price_table``) first, then litellm's cost map;
    0 for unpriced ``sim/`` models, NaN for any other unknown model.
    """
    if prices:
        # As litellm's own map does, a price given for the bare name covers ``provider/name`` too.
        price = prices.get(model) or (prices.get(model.split("/", 1)[1]) if "/" in model else None)
        if price is not None:
            return prompt_tokens * price[0] + completion_tokens * price[1]
    if model.startswith(SIM_PREFIX):
        return 0.0
    pricing = _litellm_pricing(model)
    if isinstance(pricing, tuple):
        return prompt_tokens * pricing[0] + completion_tokens * pricing[1]
    if isinstance(pricing, float):
        return math.nan
    try:
        prompt_cost, completion_cost = litellm().cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # noqa: BLE001 — litellm raises plain Exceptions for unmapped models
        return math.nan
    return float(prompt_cost) + float(completion_cost)
