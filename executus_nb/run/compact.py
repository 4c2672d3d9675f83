"""The compactor: a ``before_model_call`` hook that keeps every request under the model's context window.

Before each model call it counts the request's tokens with litellm's counter (``model/tokens.py``) for
the model that will serve it.  Above ``context_tokens × compaction_ratio`` the older turns are summarised
by a model (``Agent(compaction_tier=...)``, else the model being called) and replaced by the summary;
the system prompt, the task and the last ``keep_last_turns`` turns stay verbatim (``model/compact.py``).
If the summary fails or is still too long the oldest turns are dropped behind a marker; a request
above the window is never sent (``ContextWindowExceeded`` ends the run).  Each compaction is a
``Compacted`` event; the loop records the new conversation as ``MessagesRewritten``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NoReturn

from executus_nb.agent import Agent
from executus_nb.errors import ConfigError, ContextWindowExceeded, ModelCallError
from executus_nb.model import compact
from executus_nb.model.backend import litellm, loaded
from executus_nb.model.call import complete
from executus_nb.model.cost import Price
from executus_nb.model.sim import PREFIX as SIM_PREFIX
from executus_nb.model.spec import ModelSpec
from executus_nb.model.tier import Tier
from executus_nb.model.tokens import prompt_tokens
from executus_nb.run.log import RunLog
from executus_nb.types.context import ModelRequest, RunContext
from executus_nb.types.events import Compacted, ErrorInfo
from executus_nb.types.usage import Usage


def litellm_window(model: str) -> int | None:
    """The model's input window from litellm's model info (``max_input_tokens``), or None if unknown."""
    if model.startswith(SIM_PREFIX):
        return None
    lm = litellm()
    return _window(model, len(getattr(lm, "model_cost", None) or ()))  # a model registered later is seen


@functools.lru_cache(maxsize=1024)
def _window(model: str, map_size: int) -> int | None:
    try:
        info = litellm().get_model_info(model)
    except Exception:  # noqa: BLE001 — litellm raises for a model its map lacks: no window known
        return None
    value = info.get("max_input_tokens") or info.get("max_tokens")
    return int(value) if value else None


class Compactor:
    """The compaction hook of one run (see the module's docstring)."""

    def __init__(
        self,
        agent: Agent,
        tier: Tier,
        log: RunLog,
        summariser: Tier | None = None,
        prices: dict[str, Price] | None = None,
    ):
        self.agent, self.tier, self.log = agent, tier, log
        self.summariser = summariser
        self.prices = prices or {}
        self._windows: dict[str, int | None] = {}

    def window(self, model: str) -> int | None:
        """The context window of ``model``: ``Agent(context_tokens=)``, else its tier's, else litellm's."""
        if model not in self._windows:
            known = self.agent.context_tokens or (
                self.tier.context_window if any(m.name == model for m in self.tier.models) else None
            )
            self._windows[model] = known or litellm_window(model)
        return self._windows[model]

    async def before_model_call(self, ctx: RunContext, request: ModelRequest) -> list[dict[str, Any]] | None:
        window = self.window(request.model)
        if window is None:
            return None
        limit = int(window * self.agent.compaction_ratio)
        messages, keep = request.messages, self.agent.keep_last_turns

        def count(candidate: list[dict[str, Any]]) -> int:
            return prompt_tokens(request.model, candidate, request.tools)

        before = count(messages)
        if before <= limit:
            return None
        older = compact.older_turns(messages, keep)
        if not older:  # nothing to compact: send it if it fits the window at all
            if before > window:
                self._overflow(request, before, window)
            return None
        summary, model, usage, error = await self._summarise(older, window)
        result, method = None, "summary"
        if summary is not None:
            result = compact.with_summary(messages, keep, summary)
        if result is None or count(result) > limit:
            result, method = compact.drop_oldest(messages, keep, lambda m: count(m) <= limit), "dropped"
        after = count(result)
        if after > window:
            self._overflow(request, after, window)
        self.log.emit(
            Compacted,
            step=request.step,
            turn=request.turn,
            model=request.model,
            method=method,
            tokens_before=before,
            tokens_after=after,
            limit=limit,
            window=window,
            messages_compacted=len(older) if method == "summary" else len(messages) - len(result) + 1,
            summary=summary if method == "summary" else None,
            summary_model=model,
            usage=usage,
            error=error,
        )
        return result

    async def _summarise(
        self, older: list[dict[str, Any]], window: int
    ) -> tuple[str | None, str | None, Usage, ErrorInfo | None]:
        """The summary of ``older`` (its text, model, usage), or None and why it failed."""
        tier = self.summariser or self.tier
        spec: ModelSpec = tier.models[0]
        request = compact.summary_request(older)
        if prompt_tokens(spec.name, request) > (self.window(spec.name) or window):
            return (
                None,
                None,
                Usage(),
                ErrorInfo(type="ContextWindowExceeded", message="the turns to summarise are too long"),
            )
        try:
            done = await complete(
                spec, request, None, params=tier.params(), prices=self.prices, timeout_s=tier.timeout_s
            )
        except ModelCallError as exc:
            return None, spec.name, Usage(), ErrorInfo(type=exc.error_type, message=str(exc))
        text = done.message.get("content")
        if not isinstance(text, str) or not text.strip():
            return None, done.model, done.usage, ErrorInfo(type="EmptyResponse", message="the summary was empty")
        return text, done.model, done.usage, None

    def _overflow(self, request: ModelRequest, tokens: int, window: int) -> NoReturn:
        raise ContextWindowExceeded(
            f"the request to {request.model} needs {tokens:,} tokens, over its {window:,}-token window, even with "
            f"only the system prompt, the task and the last {self.agent.keep_last_turns} turns kept; it was not "
            "sent. Lower keep_last_turns, shorten the task, or use a model with a larger window"
        )


class CustomCompactor:
    """A plain callable ``(messages, ctx) -> messages`` as a compaction hook: a change is a ``Compacted`` event."""

    def __init__(self, fn: Callable[..., Any], log: RunLog):
        self.fn, self.log = fn, log

    async def before_model_call(self, ctx: RunContext, request: ModelRequest) -> list[dict[str, Any]] | None:
        value = self.fn(list(request.messages), ctx)
        if inspect.isawaitable(value):
            value = await value
        if value is None or value == request.messages:
            return None
        if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            raise ConfigError(f"the compaction callable returned {type(value).__name__}; return a list of messages")
        before = prompt_tokens(request.model, request.messages, request.tools)
        self.log.emit(
            Compacted,
            step=request.step,
            turn=request.turn,
            model=request.model,
            method="custom",
            tokens_before=before,
            tokens_after=prompt_tokens(request.model, value, request.tools),
            messages_compacted=max(0, len(request.messages) - len(value)),
        )
        return value


def compaction_hook(
    agent: Agent, tier: Tier, log: RunLog, tiers: dict[str, Tier], prices: dict[str, Price] | None = None
) -> Any | None:
    """The compaction hook of a run of ``agent``, or None when it has none (opted out, or no window can be
    known: a ``sim/`` tier without ``context_tokens``), so a run without one pays nothing per call."""
    if agent.compaction is False:
        return None
    if callable(agent.compaction) and not isinstance(agent.compaction, bool):
        return CustomCompactor(agent.compaction, log)
    summariser = None
    if agent.compaction_tier is not None:
        if agent.compaction_tier not in tiers:
            raise ConfigError(
                f"agent {agent.name!r}: compaction_tier {agent.compaction_tier!r} is not a known tier; "
                f"known tiers: {sorted(tiers)}"
            )
        summariser = tiers[agent.compaction_tier]
    if agent.context_tokens is None and tier.context_window is None:
        # No window given: litellm's map is the only source.  Once litellm is loaded (every run but the
        # first) it is asked now, so a model it has no window for gets no hook and costs nothing per call.
        if all(m.name.startswith(SIM_PREFIX) for m in tier.models):
            return None
        if loaded() and all(litellm_window(m.name) is None for m in tier.models):
            return None
    return Compactor(agent, tier, log, summariser, prices)
