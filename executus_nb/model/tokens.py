"""Prompt tokens of a request before it is sent: litellm's counter on the messages and tool schemas.

Budgets ask it before each model call; ``sim/`` models are counted with the tokenizer the
``sim`` provider reports its usage with, so an estimate there equals what the call then reports.
"""

from __future__ import annotations

import json
from typing import Any

from executus_nb.model.backend import litellm
from executus_nb.model.sim import PREFIX as SIM_PREFIX

_SIM_TOKENIZER_MODEL = "gpt-4o-mini"  # what model/sim.py counts with


def prompt_tokens(model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """How many prompt tokens ``messages`` (with ``tools`` offered) cost on ``model``, by litellm's counter."""
    counted = _SIM_TOKENIZER_MODEL if model.startswith(SIM_PREFIX) else model
    try:
        return int(litellm().token_counter(model=counted, messages=messages, tools=tools or None))
    except Exception:  # noqa: BLE001 — litellm's counter rejects some message shapes; a budget needs a figure
        text = json.dumps([messages, tools or []], ensure_ascii=False, default=str)
        return len(text) // 4 + 1  # ~4 characters a token, litellm's own rule of thumb
