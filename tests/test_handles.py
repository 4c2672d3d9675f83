"""The tables and views read runs, fan-outs and agents through the protocols of ``types/handles.py``:
the live objects satisfy them, and a record merely shaped like a run (a run read back from a store)
is tabled and shown the same as the live run it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from executus_nb import Agent, Executor, RunResult, RunStatus, sim
from executus_nb.frames import runs_df
from executus_nb.nb.grid_html import cell_state
from executus_nb.types.context import RunContext
from executus_nb.types.events import Event
from executus_nb.types.handles import AgentDefinition, FanoutHandle, RunHandle, RunRecord
from executus_nb.types.identity import RunIdentity

WAIT = 60  # a guard against hanging, not a speed bound


@dataclass(frozen=True)
class StoredAgent:
    name: str
    instructions: str = ""
    tools: list[Any] = field(default_factory=list)
    tier: str | None = None
    max_steps: int = 10
    max_runtime_s: float | None = None
    output_type: Any = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    hooks: tuple[Any, ...] = ()
    budget: Any = None


@dataclass(frozen=True)
class StoredLog:
    events: list[Event]


@dataclass(frozen=True)
class StoredRun:
    """A finished run as a store would give it back: plain data, no loop, no executor."""

    run_id: str
    agent: StoredAgent
    model: str
    status: RunStatus
    log: StoredLog
    result: RunResult | None


def test_live_objects_satisfy_the_protocols_the_layers_above_read():
    with Executor() as ex:
        agent = Agent(name="qa", model=sim.scripted([sim.reply("hi")]))
        run = ex.run(agent, "p")
        run.wait(timeout=WAIT, quiet=True)
        fan = ex.fanout(Agent(name="qa"), ["a", "b"], models=["sim/echo"]).wait(timeout=WAIT)
    assert isinstance(agent, AgentDefinition)
    assert isinstance(run, RunHandle) and isinstance(run, RunRecord)
    assert isinstance(fan, FanoutHandle)
    assert all(isinstance(cell.run, RunHandle) for cell in fan.cells)
    assert fan.oldest_wait_s() == 0.0  # every cell has finished: nothing waits


def test_a_run_read_back_from_a_store_is_tabled_and_shown_like_the_live_run():
    with Executor() as ex:
        run = ex.run(Agent(name="qa", model=sim.scripted([sim.reply("stored answer")])), "p")
        run.wait(timeout=WAIT, quiet=True)
    stored = StoredRun(
        run_id=run.run_id,
        agent=StoredAgent(name=run.agent.name),
        model=run.model,
        status=run.status,
        log=StoredLog(events=list(run.log.events)),
        result=RunResult.from_events(run.log.events),
    )
    assert isinstance(stored, RunRecord) and not isinstance(stored, RunHandle)  # no loop, no cancel()
    pd.testing.assert_frame_equal(runs_df([stored]), runs_df([run]))
    assert runs_df([stored])["output"].tolist() == ["stored answer"]
    assert cell_state(stored) == cell_state(run)


def test_a_context_exposes_any_agent_definition():
    ctx = RunContext(identity=RunIdentity(run_id="r-1", agent="plain"), agent=StoredAgent(name="plain"))
    assert ctx.agent.name == "plain" and isinstance(ctx.agent, AgentDefinition)
