"""What a fan-out sends to its workers once: the executor's settings, the columns' agents, the per-run options.

Functions and classes defined in a notebook cell live in ``__main__``, which a worker cannot import, so
everything goes by value with cloudpickle (importable code still goes by reference).  Packing is checked
piece by piece before any cell starts: what cannot be sent is a ``BackendError`` naming it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import cloudpickle

from executus_nb.agent import Agent
from executus_nb.errors import BackendError
from executus_nb.model import sim
from executus_nb.tool.registry import default_registry, resolve_tools


class CellRunner(Protocol):
    """What a worker needs of its executor (an ``Executor`` is one)."""

    @property
    def runs(self) -> list[Any]: ...

    @property
    def run(self) -> Callable[..., Any]: ...

    def close(self, timeout: float = 2.0) -> None: ...


@dataclass
class WorkerSetup:
    """The executor a worker builds for one fan-out (no store, sinks, audit or delivery: those hear the
    events back in the parent), and the agents of its columns."""

    model: Any
    tiers: dict[str, Any]
    prices: dict[str, dict[str, float]]
    tools: list[Any]
    policy: Any
    critic: Any
    palette: Any
    skills: Any
    hooks: tuple[Any, ...]
    cache: str | None
    columns: list[Agent]
    per_run: dict[str, Any] = field(default_factory=dict)
    sim_models: dict[str, Any] = field(default_factory=dict)  # the sim/ models, by value: a name is not enough
    make: Any = None  # the executor's class (by reference): this module sits below the run layer's executor

    def executor(self) -> CellRunner:
        """The worker's executor, its settings from this setup only (the worker's EXECUTUS_* variables unread)."""
        sim.register_all(self.sim_models)
        make: Callable[..., CellRunner] = self.make
        with settings_env_hidden():
            return make(
                model=self.model,
                tiers=self.tiers,
                prices=self.prices,
                tools=self.tools,
                policy=self.policy,
                critic=self.critic,
                palette=self.palette,
                skills=self.skills,
                hooks=self.hooks,
                cache=self.cache,
            )


@contextlib.contextmanager
def settings_env_hidden() -> Iterator[None]:
    """Hide the EXECUTUS_* variables while a worker's executor resolves its settings (the parent resolved them:
    a worker must not open the parent's store or audit file a second time)."""
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("EXECUTUS_")}
    try:
        yield
    finally:
        os.environ.update(hidden)


def build_setup(executor: Any, columns: list[Agent], per_run: dict[str, Any]) -> WorkerSetup:
    """The setup of a fan-out of ``columns`` on ``executor``: every tool the columns name, resolved here."""
    tools: dict[str, Any] = {}
    for agent in columns:
        tools.update(resolve_tools(agent.tools, executor.tools, default_registry))
    tools.update({name: executor.tools.get(name) for name in executor.tools.names()})
    history = per_run.get("history")
    per_run = dict(per_run)
    if history is not None and hasattr(history, "log") and hasattr(history, "result"):
        per_run["history"] = history.result  # a Run handle stays here; its result travels
    cache = getattr(executor.cache, "path", None)
    model = executor.default_model
    used = {m.name for agent in columns for m in executor.resolve_tier(agent).models}
    used |= {m.name for tier in executor.tiers.values() for m in tier.models}
    return WorkerSetup(
        model=model.model_dump(exclude_defaults=True) if model is not None else None,
        tiers=dict(executor.tiers),
        prices=executor.prices,
        tools=[*tools.values(), *executor.tools.sources()],
        policy=executor.ports.gate,
        critic=executor.critic if executor.critic is not None else executor.ports.critic,
        palette=executor.ports.palette,
        skills=executor.skills,
        hooks=executor.hooks,
        cache=str(cache) if cache is not None else None,
        columns=columns,
        per_run=per_run,
        sim_models=_sim_models(used),
        make=type(executor),
    )


def _sim_models(used: set[str]) -> dict[str, Any]:
    """The sim/ models that can go to a worker: each one the fan-out names must (else ``BackendError``)."""
    chosen = {}
    for key, model in sim.registered().items():
        try:
            cloudpickle.dumps(model)
        except Exception as exc:  # noqa: BLE001 — one the fan-out does not name is left behind
            if sim.PREFIX + key in used:
                raise BackendError(
                    f"cannot send the model {sim.PREFIX + key!r} to the fan-out's workers ({type(exc).__name__}: "
                    f"{exc}): its function must be picklable (cloudpickle), or run on backend='local'"
                ) from None
            continue
        chosen[key] = model
    return chosen


def pack(setup: WorkerSetup) -> bytes:
    """``setup`` as bytes for the workers; a ``BackendError`` naming the first piece that cannot be sent."""
    try:
        return cloudpickle.dumps(setup)
    except Exception as exc:  # noqa: BLE001 — find which piece, to name it
        culprit = _culprit(setup) or "the fan-out's settings"
        raise BackendError(
            f"cannot send {culprit} to the fan-out's workers ({type(exc).__name__}: {exc}); "
            "define it so it can be pickled (cloudpickle), or run this fan-out on backend='local'"
        ) from None


def _culprit(setup: WorkerSetup) -> str | None:
    pieces: list[tuple[str, Any]] = []
    for agent in setup.columns:
        pieces += [(f"agent {agent.name!r}'s tool {_name(t)!r}", t) for t in agent.tools]
        pieces += [(f"agent {agent.name!r}'s hook {_name(h)!r}", h) for h in agent.hooks]
        pieces.append((f"agent {agent.name!r}", agent))
    pieces += [(f"tool {_name(t)!r}", t) for t in setup.tools]
    pieces += [(f"executor hook {_name(h)!r}", h) for h in setup.hooks]
    pieces += [(f"fanout({key}=...)", value) for key, value in setup.per_run.items()]
    pieces += [("the executor's policy", setup.policy), ("the critic", setup.critic), ("the palette", setup.palette)]
    pieces += [("the skills", setup.skills)]
    for label, value in pieces:
        try:
            cloudpickle.dumps(value)
        except Exception:  # noqa: BLE001 — this is the one
            return label
    return None


def _name(obj: Any) -> str:
    return str(getattr(obj, "name", None) or getattr(obj, "__qualname__", None) or type(obj).__name__)
