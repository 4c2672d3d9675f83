"""``Executor``: resolves agents to models and tools, starts runs and keeps them for analysis."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from pydantic import BaseModel

from executus_nb.agent import Agent
from executus_nb.errors import (
    ConfigError,
    UserError,
    run_error,
    unknown_option,
)
from executus_nb.lane import Lanes
from executus_nb.model.cache import ResponseCache
from executus_nb.model.cost import price_table
from executus_nb.model.spec import ModelSpec
from executus_nb.model.tier import Cooldowns, Tier, single
from executus_nb.redaction import redactor
from executus_nb.run.approval import Approvals
from executus_nb.run.attach import (
    DEFAULT_MAX_BYTES,
    Attachment,
    Staged,
    as_attachment,
    as_attachments,
    check_max_bytes,
    keep_staged,
    staged_kept,
    with_parts,
)
from executus_nb.run.background import background_loop, shutdown_first
from executus_nb.run.budget import Ledger, RunBudget, budget_scopes, check_prices
from executus_nb.run.checkpoint import StoreCheckpointer
from executus_nb.run.compact import compaction_hook
from executus_nb.run.conversation import Continuation, Prompt, check_prompt, continuation
from executus_nb.run.delivery import as_delivery
from executus_nb.run.dispatch import DispatchGuard, check_dispatch
from executus_nb.run.fork import Edit, fork_point, run_source
from executus_nb.run.handle import Run
from executus_nb.run.hooks import HookSet, check_hooks
from executus_nb.run.jupyter import in_notebook
from executus_nb.run.log import RunLog
from executus_nb.run.loop import LoopState, record_cancelled_while_queued, run_agent
from executus_nb.run.persist import StoreFeed, check_store
from executus_nb.run.ports import NO_BUDGET, EventSink, NoCheckpointer, NoCritic, PaletteSource, Ports, ToolGate
from executus_nb.run.remote import RemoteBody, run_elsewhere
from executus_nb.run.resume import ResumePoint, continue_from, resume_agent, resume_point, resumed_log
from executus_nb.run.review import check_critic, review_hook
from executus_nb.run.settings import resolve_settings
from executus_nb.run.subrun import run_subrun
from executus_nb.skills import Skill, SkillCatalogue, as_catalogue, skills_for_run
from executus_nb.tool.decorator import Tool
from executus_nb.tool.registry import ToolRegistry, default_registry, resolve_tools, select_sources
from executus_nb.tool.source import ToolSource
from executus_nb.types.budget import Budget, as_budget
from executus_nb.types.context import RunContext
from executus_nb.types.events import ErrorInfo, OutputRejected
from executus_nb.types.identity import RunIdentity
from executus_nb.types.result import RunResult

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    import pandas as pd

    from executus_nb.chat import Chat
    from executus_nb.compare import Comparison
    from executus_nb.fanout import Fanout
    from executus_nb.pipeline import Pipeline, PipelineRun
    from executus_nb.schedule import Schedule
    from executus_nb.store.protocol import EventStore


def _response_cache(cache: bool | str | Path | ResponseCache | None) -> ResponseCache | None:
    if cache is None or cache is False:
        return None
    if isinstance(cache, ResponseCache):
        return cache
    if cache is True:
        return ResponseCache()
    if not isinstance(cache, (str, os.PathLike)):
        raise ConfigError(f"cache must be True, a file or folder path, or a ResponseCache, not {type(cache).__name__}")
    return ResponseCache(cache)


async def _finish(run: Run) -> RunResult:
    """Run ``run`` as its own task on this loop and await it.

    ``run.cancel()`` then stops the run only, and cancelling the caller cancels the
    run too and is re-raised (never swallowed).
    """
    run._schedule(asyncio.get_running_loop())
    try:
        return await run
    except asyncio.CancelledError:
        run.cancel()
        raise


def _generate_agent(
    output_type: type[BaseModel], instructions: str, model: Any, tier: str | None, attempts: int, timeout: float | None
) -> Agent:
    return Agent(
        name=f"generate {output_type.__name__}",
        instructions=instructions,
        model=model,
        tier=tier,
        output_type=output_type,
        output_retries=max(attempts - 1, 0),
        max_steps=max(attempts, 1),
        max_runtime_s=timeout,
        critic=False,  # one validated value: not sent back by the executor's critic
    )


def _generated(run: Run, result: RunResult) -> Any:
    """The validated output, or the typed error of how the run ended (as ``RunResult.raise_for_status``).

    From the log, an ``OutputValidationError`` also gets the last rejected text and its errors.
    """
    if result.ok:
        return result.output
    error = result.error or ErrorInfo(type="RunError", message=f"the run ended {result.status.value}")
    rejected = [ev for ev in run.log.events if isinstance(ev, OutputRejected)]
    raw, errors = (rejected[-1].raw, rejected[-1].errors) if rejected else ("", "")
    raise run_error(
        result.status.value,
        error.type,
        error.message,
        run_id=run.run_id,
        provider=error.provider,
        status_code=error.status_code,
        raw_text=raw,
        errors=errors,
    )


def overridden(
    agent: Agent, *, model: str | dict[str, Any] | None = None, tier: str | None = None, max_steps: int | None = None
) -> Agent:
    """``agent`` with one run's overrides (the caller's agent is left as it is); itself when none is given."""
    if model is None and tier is None and max_steps is None:
        return agent
    if model is not None and tier is not None:
        raise ConfigError("give model= or tier= for a run, not both")
    update: dict[str, Any] = {}
    if model is not None:
        update.update(model=ModelSpec.model_validate(model), tier=None)
    if tier is not None:
        update.update(tier=tier, model=None)
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be a whole number of at least 1, not {max_steps!r}")
        update["max_steps"] = max_steps
    return agent.model_copy(update=update)


def _keywords(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword parameters ``fn`` takes by name (for suggestions on a typo)."""
    import inspect

    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds and p.name != "self")


def _release(held: list[tuple[Lanes, str, str]]) -> None:
    for lanes, key, provider in reversed(held):
        lanes.release(key, provider)


class Executor:
    """Runs agents.  ``Executor()`` with no configuration uses an offline ``sim/`` model.

    ``model`` is the default for agents that give neither model nor tier; ``tiers``
    maps a tier name to its models, tried in order on retryable errors (a mapping,
    a TOML/YAML path, or by default ``EXECUTUS_TIER_<NAME>`` variables); ``prices`` gives
    per-token prices (this executor's only, before litellm's cost map); ``tools`` are the
    executor's registry, searched before the default one for tools named by string;
    ``policy`` (a ``Policy``) decides allow / ask / deny for every tool call (the ``gate`` slot of ``ports``);
    ``critic`` (a function ``(ctx, output) -> None | str``, an object with ``review``, a ``ModelCritic``) reviews
    the final output of every run whose agent has no critic of its own (``generate()``'s aside), at most
    ``Agent.max_revisions`` rounds sent back (``executus_nb.run.review``; ``Ports(critic=...)`` is the same);
    ``palette`` (a ``PaletteSource``: ``GlobPalette``, ``IdentityPalette``) chooses the tools, and skills, each run
    is offered (the ``palette`` slot of ``ports``); ``skills`` (``load_skills("skills/")``, a folder or a list of
    ``Skill``) are the skills agents name (``Agent(skills=[...])``: their instructions and tools join the run);
    ``ports`` (a ``Ports``) fills the host slots: gate, sinks, audit, critic, checkpointer, palette, delivery
    (``executus_nb.run.ports``, which also gives the order they run in around the hooks);
    ``max_running`` and ``provider_limits`` bound how many runs go at once (see ``Lanes``);
    ``sinks`` receive every event of every run (usage and trace sinks, see ``executus_nb.sinks``);
    ``cache=True`` answers repeated identical model calls from a response cache on disk
    (``.executus_cache/``; or a file or folder path, or a ``ResponseCache``) at no cost;
    ``hooks`` are called in every run, before the agent's and the run's own (``executus_nb.run.hooks``);
    ``budget`` (a ``Budget``) is one ledger shared by all its runs, fan-out cells included: a spending cap
    for the session (``budget_left()`` tells what is left; ``executus_nb.run.budget``);
    ``store`` (an ``EventStore``: ``SQLiteStore(path)``, ``MemoryStore()``) keeps every event of every run,
    and ``runs_df()``, ``usage_df()`` and ``steps_df()`` then read the store (every session's runs in it);
    ``max_attachment_bytes`` bounds each file or image a run's message carries (``attach()``, ``attachments=``);
    ``audit`` (an ``AuditLog(path)``: JSON Lines of runs, tool calls and approval decisions, or an ``Audit``)
    keeps the audit trail; ``delivery`` (a ``FileDelivery``, ``CallbackDelivery``… or a list) is where each
    finished run's output goes, each delivery a ``Delivered`` event (``executus_nb.run.delivery``);
    ``owner`` is who runs, on every event and table row of a run that names no owner itself
    (``run(owner=)``, else ``Agent(owner=)``, else this, else None).

    ``owner``, ``model``, ``tiers``, ``max_running``, ``provider_limits``, ``cache``, ``store`` (also a path:
    a ``SQLiteStore``), ``max_attachment_bytes``, ``audit`` (also a path: an ``AuditLog``), ``skills`` and
    ``budget`` may also come from the environment (``EXECUTUS_OWNER``, ``EXECUTUS_MODEL``… and
    ``EXECUTUS_TIER_<NAME>``) or a TOML/YAML file (``config="executus.toml"``, else ``EXECUTUS_CONFIG``; never
    found by itself in the working folder).  Each is taken from code, else the environment, else the file,
    else the default (``executus_nb.run.settings``); ``config`` holds what was resolved and ``config_df()``
    shows each setting, its source and its value (secrets masked).
    """

    def __init__(
        self,
        *,
        model: str | dict[str, Any] | None = None,
        tiers: Mapping[str, Any] | str | Path | None = None,
        prices: Mapping[str, Mapping[str, float]] | None = None,
        tools: Iterable[Tool | Callable[..., Any]] | ToolRegistry = (),
        ports: Ports | None = None,
        policy: ToolGate | None = None,
        critic: Any = None,
        palette: PaletteSource | None = None,
        skills: SkillCatalogue | str | Path | Iterable[Skill] | None = None,
        max_running: int | None = None,
        provider_limits: Mapping[str, int] | None = None,
        sinks: Iterable[EventSink] = (),
        cache: bool | str | Path | ResponseCache | None = None,
        hooks: Iterable[Any] = (),
        budget: Budget | None = None,
        store: EventStore | str | Path | None = None,
        owner: str | None = None,
        config: str | Path | None = None,
        audit: Any = None,
        delivery: Any = None,
        max_attachment_bytes: int = DEFAULT_MAX_BYTES,
        **unknown: Any,
    ):
        for key in unknown:  # a typo is a ConfigError naming the closest keyword (still a TypeError)
            raise unknown_option(key, _EXECUTOR_KEYWORDS, "Executor()")
        # Code, then the environment, then the config file, then the default: resolved in one place, and the
        # code below takes the resolved values (executus_nb.run.settings).
        self.config = resolve_settings(
            config,
            owner=owner,
            model=model,
            tiers=tiers,
            max_running=max_running,
            provider_limits=provider_limits,
            cache=cache,
            store=store,
            max_attachment_bytes=None if max_attachment_bytes == DEFAULT_MAX_BYTES else max_attachment_bytes,  # unset
            audit=audit,
            skills=skills,
            budget=budget,
        )
        max_running, provider_limits = self.config.max_running, self.config.provider_limits
        cache, store, budget = self.config.cache, self.config.store, self.config.budget
        audit, skills = self.config.audit, self.config.skills
        max_attachment_bytes = self.config.max_attachment_bytes  # its default when unset (0 is refused below)
        self.owner = self.config.owner  # the runs' owner when neither the run nor its agent names one
        self.default_model = self.config.model
        self.tiers: dict[str, Tier] = self.config.tiers
        self.cooldowns = Cooldowns()
        # This executor's own table (a bad price is a ConfigError here, not a failed run later);
        # litellm's process-wide cost map is never written, so prices never leak across executors.
        self._price_table = price_table(prices)
        self.prices = {k: dict(v) for k, v in (prices or {}).items()}
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        self._sources: list[ToolSource] = []  # the tool sources (MCP servers) its runs used: closed by close()
        self.ports = dataclasses.replace(ports) if ports is not None else Ports()  # the caller's is left as it is
        if policy is not None:
            self.ports.gate = policy
        if critic is not None and not isinstance(self.ports.critic, NoCritic):
            raise ConfigError("give the executor's critic once: critic=... or ports=Ports(critic=...), not both")
        # The default critic of runs whose agent sets none (Ports.critic is one too: _prepare reads both).
        self.critic: Any = check_critic(critic, "Executor(critic=...)")
        if palette is not None:
            self.ports.palette = palette
        self.skills = as_catalogue(skills)
        self.ports.sinks.extend(sinks)
        if audit is not None:  # an event sink (AuditLog) hears every event; an Audit port every tool call
            if isinstance(audit, EventSink) and not isinstance(audit, type):
                self.ports.sinks.append(audit)
            elif callable(getattr(audit, "record", None)) and not isinstance(audit, type):
                self.ports.audit = audit
            else:
                raise ConfigError(f"Executor(audit=...) takes an AuditLog(path), an event sink or an Audit: {audit!r}")
        if delivery is not None:
            self.ports.delivery = as_delivery(delivery)
        self.ports.check()
        self.cache = _response_cache(cache)
        self.hooks: tuple[Any, ...] = check_hooks(hooks, "Executor(hooks=...)")
        self.budget = as_budget(budget, "Executor(budget=...)")
        self._ledger = Ledger(self.budget, "executor") if self.budget is not None else None
        self.lanes = Lanes(max_running, provider_limits)
        self.runs: list[Run] = []
        self.max_attachment_bytes = check_max_bytes(max_attachment_bytes)
        self._staged = Staged()  # attach(): taken by the next run (run/attach.py)
        self._dispatch = DispatchGuard()  # run(dispatch_key=...): one run in flight per key (run/dispatch.py)
        self.schedules: list[Schedule] = []  # cancelled ones too: schedules_df() lists them
        self._backends: dict[Any, Any] = {}  # fan-out backends made for it (a process pool): closed by close()
        self.store: EventStore | None = check_store(store)
        # With a store, a step is checkpointed once its events are written (run/checkpoint.py).
        self._checkpoint = StoreCheckpointer(self.store) if self.store is not None else None
        if self._checkpoint is not None and isinstance(self.ports.checkpointer, NoCheckpointer):
            self.ports.checkpointer = self._checkpoint

    # -- resolution ------------------------------------------------------------------
    def resolve_tier(self, agent: Agent) -> Tier:
        """The models an agent's run will call, in failover order (an unknown tier is a ConfigError)."""
        if agent.tier is not None:
            if agent.tier not in self.tiers:
                raise ConfigError(
                    f"agent {agent.name!r} asks for tier {agent.tier!r}; known tiers: {sorted(self.tiers)}"
                )
            return self.tiers[agent.tier]
        return single(self.resolve_model(agent))

    def resolve_model(self, agent: Agent) -> ModelSpec:
        """The (first) model an agent's run will call: its own, its tier's, or the executor's default."""
        if agent.model is not None:
            return ModelSpec.model_validate(agent.model)  # also a name set by model_copy(update=…)
        if agent.tier is not None:
            if agent.tier not in self.tiers:
                raise ConfigError(
                    f"agent {agent.name!r} asks for tier {agent.tier!r}; known tiers: {sorted(self.tiers)}"
                )
            return self.tiers[agent.tier].models[0]
        if self.default_model is not None:
            return self.default_model
        from executus_nb.model import sim

        return ModelSpec.model_validate(sim.echo())

    def _prepare(
        self,
        agent: Agent,
        prompt: Prompt,
        run_id: str | None,
        owner: str | None,
        tags: Iterable[str],
        lane: str | None = None,
        slots: Sequence[tuple[Lanes, str, str]] = (),
        *,
        attachments: Sequence[Attachment] = (),
        **per_run: Any,
    ) -> tuple[Run, LoopState]:
        """The run (made, not started) of ``agent`` on ``prompt`` with ``attachments`` after the prompt's text,
        and for a run of its own the staged ones too (not a fan-out cell, a sub-run, a resumed run or one
        started in ``keep_staged()``); staged ones go back if the run cannot be made, so none is lost."""
        own = not slots and not per_run.get("nested") and per_run.get("resumed") is None and not staged_kept()
        staged = self._staged.take() if own else []
        try:
            if staged or attachments:
                prompt = with_parts(check_prompt(prompt), [*staged, *attachments])
            return self._prepare_run(agent, prompt, run_id, owner, tags, lane, slots, **per_run)
        except BaseException:
            self._staged.put_back(staged)
            raise

    def _prepare_run(
        self,
        agent: Agent,
        prompt: Prompt,
        run_id: str | None,
        owner: str | None,
        tags: Iterable[str],
        lane: str | None = None,
        slots: Sequence[tuple[Lanes, str, str]] = (),
        *,
        deps: Any = None,
        hooks: Iterable[Any] = (),
        budget: Budget | None = None,
        history: Any = None,
        inherited: Sequence[Any] = (),
        parent_budget: RunBudget | None = None,
        nested: bool = False,
        resumed: ResumePoint | None = None,
        via: RemoteBody | None = None,
        **overrides: Any,
    ) -> tuple[Run, LoopState]:
        if not isinstance(agent, Agent):
            raise UserError(f"expected an Agent, got {type(agent).__name__}")
        prompt = check_prompt(prompt)
        continued = continuation(history)
        run_hooks = check_hooks(hooks, "run(hooks=...)")
        agent = overridden(agent, **overrides)
        owner = owner or agent.owner or self.owner  # who runs: the run's, else its agent's, else the executor's
        run_id = run_id or uuid.uuid4().hex[:12]
        tags = tuple(tags)
        # The agent's skills that the palette offers join its instructions and tools (an unknown one: ConfigError).
        who = (
            resumed.identity
            if resumed is not None
            else RunIdentity(run_id=run_id, agent=agent.name, owner=owner, tags=(*agent.tags, *tags))
        )
        agent = skills_for_run(agent, self.skills, self.ports.palette, who)
        tier = self.resolve_tier(agent)
        spec = tier.models[0]
        scopes = self._budget_scopes(agent, tier, as_budget(budget, "run(budget=...)"), inherited)
        # Every secret the run may send, and so see echoed, is redacted from its events by value.
        for model in tier.models:
            redactor.add_params(model.params)
        redactor.add_environment()
        tools = resolve_tools(agent.tools, self.tools, default_registry)
        sources = select_sources(agent.tools, self.tools, default_registry)
        self._sources += [s for s in sources.used if s not in self._sources]
        log = (
            RunLog(
                run_id,
                agent.name,
                owner,
                tuple(agent.tags) + tuple(tags),
                parent_run_id=continued.parent_run_id,
                conversation_id=continued.conversation_id,
                forked_at=continued.forked_at,
            )
            if resumed is None
            else resumed_log(resumed)  # the stored run goes on: its identity, its events numbered on
        )
        for sink in self.ports.sinks:
            log.subscribe(sink.on_event)
        if self.store is not None:
            log.subscribe(StoreFeed(self.store, log))
        approvals = Approvals(interactive=in_notebook)
        # The budget slot comes after every hook: at before_model_call it judges the request as sent.
        budget_hook = (
            RunBudget(
                scopes, log, spec.name, [t.schema for t in tools.values()], self._price_table, parent=parent_budget
            )
            if scopes
            else None
        )
        # The compactor comes after the caller's hooks (it sees the request they leave), before the budget.
        compactor = compaction_hook(agent, tier, log, self.tiers, self._price_table)
        own = (compactor,) if compactor is not None else ()
        # The critic: the agent's own, else the executor's (critic= or its ports' slot); after the caller's hooks.
        default = self.critic if self.critic is not None else self.ports.critic
        chosen = agent.critic if agent.critic is not None else default
        critic = review_hook(chosen, agent.max_revisions, log)
        ordered = self.ports.hooks(
            self.hooks + agent.hooks + run_hooks + own, budget=budget_hook or NO_BUDGET, critic=critic, log=log
        )
        state = LoopState(
            log=log,
            agent=agent,
            tier=tier,
            tools=tools,
            approvals=approvals,
            cooldowns=self.cooldowns,
            cache=self.cache,
            prices=self._price_table,
            hooks=HookSet(ordered),
            history=continued.messages,
            prompted=continued.forked_at is None,  # a fork's history is its first request as it stands
        )
        state.ctx.deps = deps
        state.ctx.spawn = functools.partial(self._spawn, state.ctx, log, scopes, budget_hook)
        if self._checkpoint is not None:  # a tool acts only once its call and decision are written
            state.durable = self._checkpoint.wait
        if resumed is not None:
            continue_from(state, resumed)

        async def prepare() -> None:
            try:
                if sources:  # MCP servers start (or are reused) and list their tools while litellm loads
                    await asyncio.gather(self._ensure_backend(), sources.add_to(tools))
                    state.all_tools = state.offered = frozenset(tools)
                    if budget_hook is not None:
                        budget_hook.tools[:] = [t.schema for t in tools.values()]
                else:
                    await self._ensure_backend()
            finally:  # RunStarted, emitted next, records the budget left as the run starts
                if budget_hook is not None:
                    state.ctx.budget_left = budget_hook.left()

        key = lane or owner or "default"
        # Slots to hold while running, outermost first (a fan-out's own bounds, then the executor's);
        # a sub-run holds none: it runs within its parent's slot (waiting for another could deadlock).
        needed = [] if nested else [*slots, (self.lanes, key, spec.provider)]

        async def body(run: Run) -> None:
            held: list[tuple[Lanes, str, str]] = []
            try:
                for lanes, lane_key, provider in needed:
                    await lanes.acquire(lane_key, provider)
                    held.append((lanes, lane_key, provider))
            except asyncio.CancelledError:
                _release(held)
                record_cancelled_while_queued(state, prompt)
                await state.hooks.after_run(state.ctx, log.events)  # every ending is heard, this one too
                return
            try:
                if via is not None:  # a fan-out cell on a worker: its events come back into this log
                    await run_elsewhere(log, agent, prompt, spec.name, via)
                elif resumed is None:
                    await run_agent(state, prompt, prepare=prepare)
                else:
                    await resume_agent(state, prepare=prepare)
            finally:
                _release(held)

        run = Run(run_id, agent, prompt, spec.name, log, body, approvals)
        self.runs.append(run)
        return run, state

    def _budget_scopes(
        self, agent: Agent, tier: Tier, run_budget: Budget | None, inherited: Sequence[Any] = ()
    ) -> list[Any]:
        """The budget scopes that bind a run of ``agent`` (run, agent, executor, and a sub-run's parent's:
        ``inherited``); with ``max_usd``, every model of its tier must have a known price
        (``UnknownPriceError``, before the run starts)."""
        scopes = budget_scopes(run_budget, agent.budget, self._ledger)
        scopes += [s for s in inherited if all(s.ledger is not t.ledger or s.name != t.name for t in scopes)]
        summarisers = (
            self.tiers[agent.compaction_tier].models
            if agent.compaction is True and agent.compaction_tier in self.tiers
            else []
        )  # a summary is spent like any call: its model needs a price too
        check_prices(scopes, [*tier.models, *summarisers], self._price_table)
        return scopes

    async def _spawn(
        self,
        parent: RunContext,
        log: RunLog,
        scopes: Sequence[Any],
        budget_hook: RunBudget | None,
        agent: Agent,
        prompt: Prompt,
    ) -> RunResult:
        """Run ``agent`` on ``prompt`` as a sub-run of the run of ``parent`` (``RunContext.spawn``): its own
        conversation, ``parent_run_id`` the parent's, the parent's budget scopes and deps, no lane slot of
        its own; cancelled with its caller."""

        def start() -> Run:
            run, _ = self._prepare(
                agent,
                prompt,
                None,
                log.identity.owner,
                (),
                deps=parent.deps,
                history=Continuation(parent_run_id=log.identity.run_id),
                inherited=scopes,
                parent_budget=budget_hook,
                nested=True,
            )
            return run

        return await run_subrun(log, start)

    def budget_left(self) -> dict[str, float]:
        """What the executor's budget has left per limit (``{"max_usd": 0.42, …}``; ``{}`` without one).

        Spending of calls still in flight is added when they return; ``max_runtime_s`` counts from the
        start of the executor's first run.
        """
        return self._ledger.left() if self._ledger is not None else {}

    async def _ensure_backend(self) -> None:
        # litellm takes seconds to import and warm up: do it off the event loop so the kernel stays
        # responsive, and before the run's clock starts (run_agent's prepare step).
        from executus_nb.model import backend

        if not backend.ready():
            await asyncio.to_thread(backend.prepare)
            shutdown_first()  # litellm, just imported, registered an exit handler that must run after ours
            await backend.warm_up()

    # -- running ---------------------------------------------------------------------
    @overload
    def run(
        self,
        agent: Agent,
        prompt: Prompt,
        *,
        history: Any = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        run_id: str | None = None,
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        within: Sequence[tuple[Lanes, str, str]] = (),
        via: RemoteBody | None = None,
        attachments: Iterable[Any] = (),
        dispatch_key: str | None = None,
        on_duplicate: str = "reject",
    ) -> Run: ...
    @overload
    def run(
        self,
        agent: Pipeline,
        prompt: Any,
        *,
        history: Any = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        run_id: str | None = None,
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        within: Sequence[tuple[Lanes, str, str]] = (),
        via: RemoteBody | None = None,
        attachments: Iterable[Any] = (),
        dispatch_key: str | None = None,
        on_duplicate: str = "reject",
    ) -> PipelineRun: ...
    @overload
    def run(
        self,
        agent: Agent | Pipeline,
        prompt: Any,
        *,
        history: Any = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        run_id: str | None = None,
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        within: Sequence[tuple[Lanes, str, str]] = (),
        via: RemoteBody | None = None,
        attachments: Iterable[Any] = (),
        dispatch_key: str | None = None,
        on_duplicate: str = "reject",
    ) -> Run: ...
    def run(
        self,
        agent: Agent | Pipeline,
        prompt: Prompt,
        *,
        history: Any = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        run_id: str | None = None,
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        within: Sequence[tuple[Lanes, str, str]] = (),
        via: RemoteBody | None = None,
        attachments: Iterable[Any] = (),
        dispatch_key: str | None = None,
        on_duplicate: str = "reject",
    ) -> Run | PipelineRun:
        """Start a run and return its handle at once (on the running loop, else a background one).

        Per run, without copying the agent: ``deps`` (any object, reaching hooks and tools as
        ``ctx.deps``), ``model`` or ``tier``, ``max_steps``, ``budget`` (a ``Budget`` for this run, bound
        with the agent's and the executor's: the tightest wins), and ``hooks`` (called after the
        executor's and the agent's).  ``lane`` is the fair-share key it queues under (default:
        the owner, else ``"default"``).  ``within`` are more bounds the run holds a slot of while it runs,
        outermost first: ``(lanes, key, provider)`` triples of ``executus_nb.lane.Lanes`` (a fan-out bounds its
        cells so; the executor's own bound comes last).  ``via`` runs the agent elsewhere (a fan-out backend's worker: ``executus_nb.run.remote``)
        while the handle, the log, the bounds, the sinks and the store stay here.

        ``prompt`` is a str or a list of content parts (text and ``image_url`` parts, passed to litellm as is).
        ``history`` (a ``RunResult``, a finished ``Run`` or a list of message dicts) is the conversation the
        run continues: it joins that run's ``conversation_id`` and names it as ``parent_run_id``; a history
        with a system message keeps it (the agent's instructions are not repeated), and any agent may pick
        a conversation up.

        ``agent`` may be a ``Pipeline``: its phases run in order, and the handle is a ``PipelineRun``
        (``executus_nb.pipeline``; the per-run options apply to each phase's run).

        ``attachments`` (paths, bytes or ``Attachment``s) go after the prompt's text as content parts, with
        the ones ``attach()`` staged, which this run takes (a fan-out's cells and a pipeline's phases leave
        them for the next run); each is checked first: ``AttachmentError``, and no run is made.
        ``dispatch_key`` allows one run in flight per key: dispatched again before that run ends, the call
        raises ``DispatchRejected`` (``on_duplicate="reject"``) or returns the run in flight (``"join"``:
        nothing new starts, its prompt is not sent).
        """
        extra = as_attachments(attachments, self.max_attachment_bytes)  # refused here, before anything starts
        check_dispatch(dispatch_key, on_duplicate)
        if not isinstance(agent, Agent):
            from executus_nb.pipeline import Pipeline

            if isinstance(agent, Pipeline):
                if via is not None:
                    raise ConfigError("a pipeline's phases run in this process: run it on the 'local' backend")
                if extra and not isinstance(prompt, (str, list)):
                    raise ConfigError("attachments= go after a pipeline's input text: give it a str or content parts")
                start_pipeline = functools.partial(
                    agent.start,
                    self,
                    with_parts(prompt, extra) if extra else prompt,
                    run_id=run_id,
                    owner=owner,
                    tags=tags,
                    lane=lane,
                    within=within,
                    history=history,
                    deps=deps,
                    model=model,
                    tier=tier,
                    max_steps=max_steps,
                    budget=budget,
                    hooks=hooks,
                )
                with keep_staged():  # its phases (in its task, which copies this context) leave the staged ones
                    return self._dispatched(start_pipeline, dispatch_key, on_duplicate)
        start = functools.partial(
            self._start,
            agent,
            prompt,
            history=history,
            run_id=run_id,
            owner=owner,
            tags=tags,
            lane=lane,
            slots=within,
            via=via,
            deps=deps,
            model=model,
            tier=tier,
            max_steps=max_steps,
            budget=budget,
            hooks=hooks,
            attachments=extra,
        )
        return self._dispatched(start, dispatch_key, on_duplicate)

    def _dispatched(self, start: Callable[[], Run], key: str | None, on_duplicate: str) -> Run:
        """``start()``'s run, or with a dispatch key the guard's answer (a new run, the one in flight, a refusal)."""
        return start() if key is None else self._dispatch.claim(key, start, on_duplicate)[0]

    def _start(
        self,
        agent: Agent,
        prompt: Prompt,
        *,
        run_id: str | None = None,
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        slots: Sequence[tuple[Lanes, str, str]] = (),
        **per_run: Any,
    ) -> Run:
        run, _ = self._prepare(agent, prompt, run_id, owner, tags, lane, slots, **per_run)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = background_loop()
        run._schedule(loop)
        return run

    def generate(
        self,
        output_type: type[BaseModel],
        prompt: str,
        *,
        tier: str | None = None,
        model: str | dict[str, Any] | None = None,
        instructions: str = "",
        attempts: int = 3,
        timeout: float | None = None,
    ) -> Any:
        """Ask a model for one validated ``output_type`` instance (JSON-schema mode where supported).

        A validation failure goes back to the model, up to ``attempts`` answers in all;
        the last failure raises ``OutputValidationError`` with the raw text and the errors.
        ``timeout`` is the run's ``max_runtime_s`` (set-up excluded).  A run that does not succeed
        raises its typed error with its ``run_id``: ``MaxStepsExceeded``, ``RunTimeout``,
        ``RunCancelled``, ``RunStopped`` (a hook or a budget), ``ModelCallError`` (the provider failed).
        """
        run = self.run(_generate_agent(output_type, instructions, model, tier, attempts, timeout), prompt)
        return _generated(run, run.wait(quiet=True))  # the run's own bound ends it: no second clock here

    async def agenerate(
        self,
        output_type: type[BaseModel],
        prompt: str,
        *,
        tier: str | None = None,
        model: str | dict[str, Any] | None = None,
        instructions: str = "",
        attempts: int = 3,
        timeout: float | None = None,
    ) -> Any:
        """``generate`` for async code: await the validated instance (the same errors)."""
        agent = _generate_agent(output_type, instructions, model, tier, attempts, timeout)
        run, _ = self._prepare(agent, prompt, None, None, ())
        return _generated(run, await _finish(run))

    def chat(self, agent: Agent, *, history: Any = None, **per_run: Any) -> Chat:
        """A conversation with ``agent``: ``chat.send(prompt)`` runs each turn, continuing the one before.

        ``history`` (as in ``run``) is what the first turn continues; ``per_run`` are ``run`` options
        every turn gets (``deps``, ``model``, ``max_steps``…).
        """
        from executus_nb.chat import Chat

        return Chat(self, agent, history=history, **per_run)

    def schedule(
        self,
        agent: Agent,
        prompt: Prompt,
        *,
        every: timedelta | float | None = None,
        at: datetime | None = None,
        name: str | None = None,
        **per_run: Any,
    ) -> Schedule:
        """Run ``agent`` on ``prompt`` every ``every`` (a timedelta, or seconds) or once ``at`` a datetime (naive:
        local time; past: at once, late), in this process; returns the ``Schedule`` (cancel, pause, resume, runs).

        ``per_run`` are ``run`` options every run gets (``deps``, ``model``, ``max_steps``, ``owner``, ``tags``…);
        each run is tagged ``schedule:<name>`` (``name`` defaults to the agent's).  A due time missed while the
        kernel was busy or asleep is run once on catch-up, tagged ``late``; one that finds the last run still
        going is skipped; both are in ``history`` (``executus_nb.schedule``).
        """
        from executus_nb.schedule import Schedule

        schedule = Schedule(self, agent, prompt, every=every, at=at, name=name, **per_run)  # checks its arguments
        # A bad model, tier or price is an error here, not at every due time.
        chosen = overridden(agent, **{k: per_run[k] for k in ("model", "tier", "max_steps") if k in per_run})
        self._budget_scopes(chosen, self.resolve_tier(chosen), as_budget(per_run.get("budget"), "schedule(budget=...)"))
        self.schedules.append(schedule)
        with keep_staged():  # its runs start at their due times, in its task (which copies this context)
            return schedule.start()

    def resume(self, run_id: str, agent: Agent) -> Run:
        """Go on with a run its process left unfinished (a kernel restart, a crash, SIGKILL), from its store.

        ``agent`` supplies the tools (code is not stored) and the model; the run keeps its run_id, its
        events are numbered on from the stored ones, and it continues from its last completed step:
        completed model and tool calls are not made again.  A tool call that was in flight is finished as
        ``unknown_after_crash`` and run again only if its tool is ``@tool(idempotent=True)``; a call whose
        approval was pending waits for it again (``run.approve()``).  A finished run comes back done, with
        its stored result.  Needs ``Executor(store=...)``, where every step of a run is checkpointed: its
        events are written before the next model call, and a tool's call before the tool runs
        (``executus_nb.run.checkpoint``).  Resume a run once, after the process that ran it has ended.
        """
        if self.store is None:
            raise ConfigError(
                "resume() reads the run from the executor's store: create the executor with one, "
                "Executor(store=SQLiteStore('runs.db')), the store the run was saved in"
            )
        if not isinstance(run_id, str):
            raise UserError(f"resume() takes a run_id (a str), got {type(run_id).__name__}")
        if not isinstance(agent, Agent):
            raise UserError(f"resume() needs the Agent to go on with (its tools are code), got {type(agent).__name__}")
        live = next((run for run in self.runs if run.run_id == run_id and not run.done), None)
        if live is not None:
            raise UserError(f"run {run_id} is still running in this executor: wait for it, there is nothing to resume")
        events = list(self.store.events(run_id))
        if not events:
            raise UserError(f"run {run_id!r} is not in the store {self.store!r}: nothing to resume")
        point = resume_point(events)
        if point.finished:
            run = Run.ended(agent, resumed_log(point))
            self.runs.append(run)
            return run
        return self._start(agent, point.prompt, run_id=run_id, resumed=point)

    def fork(
        self, run: Run | RunResult | str, at_step: int, agent: Agent | None = None, edit: Edit | None = None
    ) -> Run:
        """A new run from ``run``'s conversation as it stood after step ``at_step``: a what-if, started at once.

        A step is one model call and the tool calls it asked for (the ``turn`` column of ``steps_df()``);
        ``at_step=0`` is the prompt alone.  The fork's first request is that conversation exactly, as
        ``edit(messages) -> messages`` leaves it if given, answered by ``agent`` (default: the run's own; or
        ``agent.model_copy(update={"model": ...})`` for another model); as with ``history=``, only a
        conversation without a system message gets the agent's instructions.  A fork is a branch: its own
        ``conversation_id``, with ``parent_run_id`` and ``forked_at`` naming where it came from (``runs_df``).
        ``run`` is a finished ``Run``, its ``RunResult`` or its run_id (of this executor, or of its store).
        """
        source = run_source(run, self.runs, getattr(self, "store", None))  # the store, once one is set
        prompt, start = fork_point(source, at_step, edit)
        chosen = agent if agent is not None else source.agent
        if chosen is None:
            raise UserError(f"run {source.run_id} was read from the store: give the agent to fork it with (agent=...)")
        with keep_staged():  # a fork's first request is its parent's conversation as it stood: no new message
            return self.run(chosen, prompt, history=start)

    def compare(self, run_a: Run | RunResult | str, run_b: Run | RunResult | str) -> Comparison:
        """Two runs side by side: their steps aligned (``.df``, ``.steps_df()``), one row each (``.summary_df()``),
        and in Jupyter an HTML view.  A fork's steps are aligned after the step it was forked at."""
        from executus_nb.compare import Comparison

        store = getattr(self, "store", None)
        a, b = (run_source(run, self.runs, store, "compare") for run in (run_a, run_b))
        return Comparison(a.events, b.events)

    def fanout(
        self,
        agent: Agent | None = None,
        prompts: Sequence[str] = (),
        *,
        models: Sequence[str | dict[str, Any]] | None = None,
        agents: Sequence[Agent | Pipeline] | None = None,
        concurrency: int | None = None,
        per_key: int | None = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        history: Any = None,
        backend: Any = "local",
    ) -> Fanout:
        """Run every prompt against every model (or agent, or ``Pipeline``): an N×M grid of runs, returned at once.

        ``concurrency`` bounds the fan-out's runs in flight, ``per_key`` the runs per model
        (or agent) column.  Its runs queue in their own lane, so other runs are not starved.
        ``deps``, ``model``/``tier`` (with ``agents=`` only), ``max_steps``, ``budget`` (each cell's own)
        and ``hooks`` apply to every cell; the executor's budget is shared by all the cells.  ``history``
        (as in ``run``) is the conversation every cell continues.

        ``backend`` is where the cells run: ``"local"`` (this process's loop), ``"processes"`` (worker processes,
        one per core, started once per executor and reused: ``executus_nb.scale``), a ``dask.distributed``
        ``Client`` (its cluster's workers), ``"ray"`` (``executus_nb[ray]``) or a ``ProcessPool(workers=n)``.
        Handles, bounds (``concurrency``, ``per_key``, ``provider_limits``), sinks and the store stay here.
        """
        from executus_nb.fanout import Fanout

        if models is not None and (model is not None or tier is not None):
            raise UserError("fanout(models=[...]) already sets each column's model: drop model=/tier=")
        cell_budget = as_budget(budget, "fanout(budget=...)")
        # Every column's prices are checked before any cell starts (a max_usd with an unpriced model).
        columns = (
            [agent.model_copy(update={"model": ModelSpec.model_validate(m), "tier": None}) for m in models]
            if models is not None and isinstance(agent, Agent)
            else [
                a for a in agents or ([agent] if models is None and agent is not None else []) if isinstance(a, Agent)
            ]
        )
        for column in columns:
            column = overridden(column, model=model, tier=tier)
            self._budget_scopes(column, self.resolve_tier(column), cell_budget)
        per_run = {
            "deps": deps,
            "model": model,
            "tier": tier,
            "max_steps": max_steps,
            "budget": cell_budget,
            "hooks": check_hooks(hooks, "fanout(hooks=...)"),
        }
        if history is not None:
            continuation(history)  # a bad history is one error here, not one per cell
            per_run["history"] = history
        return Fanout.start(
            self,
            agent,
            prompts,
            models=models,
            agents=agents,
            concurrency=concurrency,
            per_key=per_key,
            per_run=per_run,
            backend=backend,
            pools=self._backends,
        )

    async def arun(
        self,
        agent: Agent,
        prompt: Prompt,
        *,
        history: Any = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
        run_id: str | None = None,
        owner: str | None = None,
        tags: Iterable[str] = (),
        lane: str | None = None,
        attachments: Iterable[Any] = (),
        dispatch_key: str | None = None,
        on_duplicate: str = "reject",
    ) -> RunResult:
        """Run to the end on the current loop and return the result (the same per-run options as ``run``,
        ``history``, ``attachments`` and ``dispatch_key`` too: a joined dispatch awaits the run in flight)."""
        extra = as_attachments(attachments, self.max_attachment_bytes)
        check_dispatch(dispatch_key, on_duplicate)
        start = functools.partial(
            self._prepare,
            agent,
            prompt,
            run_id,
            owner,
            tags,
            lane,
            history=history,
            deps=deps,
            model=model,
            tier=tier,
            max_steps=max_steps,
            budget=budget,
            hooks=hooks,
            attachments=extra,
        )
        if dispatch_key is None:
            return await _finish(start()[0])
        run, joined = self._dispatch.claim(dispatch_key, lambda: start()[0], on_duplicate)
        if joined:
            return await run  # shielded: cancelling this caller leaves the run in flight to its own
        return await _finish(run)

    # -- attachments and dispatch ----------------------------------------------------
    def attach(self, source: Any, mime: str | None = None, *, name: str | None = None) -> Attachment:
        """Stage a file or image (a path, or bytes) for the next run's user message, after its text; returns it.

        Checked now (``AttachmentError``): a regular file of at most ``max_attachment_bytes``, of a type a
        model takes: PNG, JPEG, GIF or WEBP images, PDF, text or JSON (``mime`` if given, else guessed from
        the name, else from the bytes).  The next run of this executor (``run``, ``arun``, a chat turn) takes
        every staged one; a fan-out's cells, a pipeline's phases, forks and scheduled runs leave them.
        """
        attachment = as_attachment(source, mime, name=name, max_bytes=self.max_attachment_bytes)
        self._staged.add(attachment)
        return attachment

    @property
    def pending_attachments(self) -> list[Attachment]:
        """The attachments staged for the next run (a copy)."""
        return self._staged.pending()

    def clear_attachments(self) -> None:
        """Drop the staged attachments."""
        self._staged.clear()

    def in_flight(self) -> dict[str, Run]:
        """The runs holding a dispatch key now (``run(..., dispatch_key=...)``), by key."""
        return self._dispatch.in_flight()

    # -- shutting down ---------------------------------------------------------------
    def close(self, timeout: float = 2.0) -> None:
        """Cancel this executor's unfinished runs and wait at most ``timeout`` s for them to end.

        Never hangs on a tool: a thread that does not return is let go (it is a daemon thread,
        counted by ``executus_nb.tool.stuck_tool_calls()``), as is a task that ignores
        cancellation.  Called on the runs' own loop (a notebook cell) it only cancels them.
        Then the MCP servers its runs used (and those in its ``tools``) are stopped, child processes included.
        Its schedules are cancelled first, so none starts a run meanwhile.
        """
        for schedule in self.schedules:
            schedule.cancel()
        pending = [run for run in self.runs if not run.done]
        for run in pending:
            run.cancel()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        deadline = time.monotonic() + timeout
        # Runs that ended but still deliver their result (after_run) are waited for too, not cancelled.
        for run in [run for run in self.runs if not run._future.done()]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if run._loop is None or run._loop is running:
                continue  # not started, or on this loop: it finishes once the caller yields
            try:
                run._future.result(remaining)
            except Exception:  # noqa: BLE001 — closing reports nothing: the run's result says what happened
                pass
        if self.store is not None:  # bounded: a store that cannot write keeps retrying (and has warned)
            self.store.flush(max(deadline - time.monotonic(), 5.0))
        for source in [*self._sources, *(s for s in self.tools.sources() if s not in self._sources)]:
            source.close()  # an MCP server's child process ends (each bounded; it starts again if used later)
        for pool in self._backends.values():  # worker processes stop (bounded); none is left behind
            pool.close()
        self._backends.clear()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # In a thread: close() waits for runs that may be on this very loop, which must keep going meanwhile.
        await asyncio.to_thread(self.close)

    # -- analysis --------------------------------------------------------------------
    def runs_df(self) -> pd.DataFrame:
        """One row per run of this executor, or with a store every run in it (see ``executus_nb.frames.runs_df``)."""
        if self.store is not None:
            from executus_nb.store.reads import reads_of

            return reads_of(self.store).runs_df()
        from executus_nb.frames import runs_df

        return runs_df(self.runs)

    def schedules_df(self) -> pd.DataFrame:
        """One row per schedule of this executor, cancelled ones too: interval or time, status, next and last
        run, runs, late runs, skipped overlaps and missed due times (see ``executus_nb.schedule``)."""
        from executus_nb.schedule import schedules_df

        return schedules_df(self.schedules)

    def config_df(self) -> pd.DataFrame:
        """One row per setting: key, value (secrets masked) and source (``"code"``, ``"env:EXECUTUS_…"``,
        ``"file:<path>"`` or ``"default"``), as resolved when the executor was made."""
        return self.config.to_df()

    def lanes_df(self) -> pd.DataFrame:
        """Queue depth and waiting time per lane (see ``Lanes.lanes_df``)."""
        return self.lanes.lanes_df()

    def usage_df(self, by: Sequence[str] = ("model",)) -> pd.DataFrame:
        """Usage per model across every run of this executor (with a store: every run in it), or per ``by``:
        any of ``"model"``, ``"agent"``, ``"owner"``, ``"day"`` (as ``store.usage_df(by=...)``)."""
        if self.store is not None:
            from executus_nb.store.reads import reads_of

            return reads_of(self.store).usage_df(by=by)
        from executus_nb.frames import usage_df

        return usage_df([ev for run in self.runs for ev in run.log.events], by=by)

    def steps_df(self) -> pd.DataFrame:
        """Every step of every run of this executor (with a store: every run in it)."""
        if self.store is not None:
            from executus_nb.store.reads import reads_of

            return reads_of(self.store).steps_df()
        from executus_nb.frames import steps_df

        return steps_df([ev for run in self.runs for ev in run.log.events])

    def __repr__(self) -> str:
        return f"Executor(runs={len(self.runs)}, tiers={sorted(self.tiers)})"


_EXECUTOR_KEYWORDS = _keywords(Executor.__init__)
