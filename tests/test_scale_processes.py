"""Fan-outs on worker processes (``backend="processes"`` / ``ProcessPool``): the same cells as on ``local``, tools
from ``__main__``, bounds across workers at a real server, a killed worker, cancel, what cannot be sent, and no
process left behind."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executus_nb import (
    Agent,
    BackendError,
    ConfigError,
    Executor,
    MemoryStore,
    Pipeline,
    Policy,
    ProcessPool,
    WorkerLost,
    sim,
    tool,
)
from executus_nb.sinks import MemorySink
from executus_nb.types.budget import Budget
from executus_nb.types.events import RunFinished, RunStarted
from tests.waiting import WAIT, wait_until

pytest_plugins = ["tests.conftest_server"]

SCRIPT = Path(__file__).parent / "scale_scripts" / "notebook_tools.py"
SAME_COLUMNS = [
    "row",
    "col",
    "prompt",
    "model",
    "models",
    "agent",
    "status",
    "output",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "steps",
    "attempts",
    "error_type",
    "error_message",
]


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def tool_then_reply() -> str:
    return sim.scripted([sim.call("shout", text="hi"), sim.reply("done")], name="scale-tool-then-reply")


def gated_model(gate: Path, name: str) -> str:
    """A model whose calls wait until the file ``gate`` exists (the test opens it when it is ready)."""
    path = str(gate)

    async def wait_for_gate(messages, tools):
        deadline = time.monotonic() + WAIT
        while not os.path.exists(path) and time.monotonic() < deadline:  # noqa: ASYNC240 — one stat, polled
            await asyncio.sleep(0.01)
        return sim.reply("answer to " + messages[-1]["content"])

    return sim.function(wait_for_gate, name=name)


def fan_out_at_server(ex: Executor, backend: Any, server: Any, columns: int = 1, **fanout: Any) -> int:
    """12 model calls at the loopback server (0.2 s each) through ``backend``; each cell checked, the most the
    server saw at once returned (the bound under test)."""
    server.latency_s = 0.2
    model = {"model": "openai/test-model", "api_base": server.base_url, "api_key": "sk-x"}
    prompts = [f"q{i}" for i in range(12 // columns)]
    fan = ex.fanout(Agent(name="qa"), prompts, models=[model] * columns, backend=backend, **fanout).wait(WAIT)
    assert (fan.to_df().status == "succeeded").all()
    assert server.count == 12
    return server.max_concurrency


def check_cancel_ends_every_cell(ex: Executor, backend: Any, gate: Path, name: str, workers: Any) -> None:
    """``cancel()`` ends all 6 cells of a fan-out held at ``gate`` (3 running, 3 queued), and ``backend`` goes on
    with the same ``workers()`` for the next fan-out."""
    agent = Agent(name="stuck", model=gated_model(gate, name))
    fan = ex.fanout(agent, [f"q{i}" for i in range(6)], concurrency=3, backend=backend)
    wait_until(lambda: fan.counts()["running"] == 3, WAIT)
    before = workers()
    assert fan.cancel() == 6
    fan.wait(WAIT)
    assert fan.done and fan.counts()["cancelled"] == 6
    again = ex.fanout(Agent(name="next"), ["a", "b"], backend=backend).wait(WAIT)
    assert list(again.to_df().status) == ["succeeded"] * 2
    assert list(again.to_df().output) == ["(sim echo) a", "(sim echo) b"]
    assert workers() == before


def check_lost_then_retried(fan: Any, names: str) -> None:
    """Some (not all) cells of ``fan`` failed with ``WorkerLost`` naming the dead worker (``names``), each log
    whole; ``retry_failed()`` re-runs exactly those, and every cell then has its answer."""
    df = fan.to_df()
    failed = df[df.status == "failed"]
    assert 1 <= len(failed) < len(df) and (df[df.status != "failed"].status == "succeeded").all(), df
    assert (failed.error_type == WorkerLost.__name__).all(), list(failed.error_message)
    assert all(names in message for message in failed.error_message), list(failed.error_message)
    for run in fan.runs:
        assert isinstance(run.log.events[0], RunStarted) and isinstance(run.log.events[-1], RunFinished)

    fan.retry_failed().wait(WAIT)
    after = fan.to_df()
    assert (after.status == "succeeded").all(), after[["status", "error_message"]]
    assert list(after.attempts) == [2 if i in failed.index else 1 for i in range(len(df))]
    assert list(after.output) == [f"answer to q{i}" for i in range(len(df))]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPool]:
    """Two warm workers shared by the module's fan-outs (a killed one is replaced on the next cell)."""
    pool = ProcessPool(workers=2)
    assert pool.wait_ready(WAIT)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def notebook_script(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The notebook-style script run once on ``processes``: what it printed, and which processes ran it."""
    marker = tmp_path_factory.mktemp("script") / "imported-by"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "processes", str(marker)], capture_output=True, text=True, env=env, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "imported_by": marker.read_text().split()}


def test_notebook_style_tools_run_on_processes_as_on_local(notebook_script):
    """Tools, a sim/ model and an output type defined in ``__main__`` (a script without a main guard) travel to
    the workers; the workers never import that script again (no recursive fan-out)."""
    local, remote, pids = notebook_script["local"], notebook_script["remote"], notebook_script["pids"]
    assert notebook_script["imported_by"] == [str(notebook_script["parent"])]
    assert len(remote) == 6 and all(cell["status"] == "succeeded" and cell["is_answer"] for cell in remote)
    ran_in = set()
    for here, there in zip(local, remote, strict=True):
        assert (here["prompt"], here["steps"], here["output"]["key"]) == (there["prompt"], 3, there["output"]["key"])
        found, pid = there["output"]["found"].rsplit(" from pid ", 1)
        assert found == here["output"]["found"].rsplit(" from pid ", 1)[0] == f"value of {here['prompt']}"
        ran_in.add(int(pid))
    assert ran_in <= set(pids) and str(notebook_script["parent"]) not in map(str, ran_in)


def test_interpreter_exit_leaves_no_worker_behind(notebook_script):
    pids = notebook_script["pids"]
    assert len(pids) >= 1
    wait_until(lambda: all(gone(pid) for pid in pids), WAIT)


def test_tables_are_the_same_on_processes_as_on_local(pool):
    agent = Agent(name="qa", tools=[shout])
    models = [tool_then_reply(), sim.echo(), sim.failing(503)]
    prompts = ["one", "two words", "three more words"]
    fans = {}
    for name, backend in (("local", "local"), ("processes", pool)):
        ex = Executor()
        fans[name] = ex.fanout(agent, prompts, models=models, backend=backend).wait(WAIT)
        ex.close()
    local, remote = fans["local"], fans["processes"]
    assert remote.backend is pool and local.backend is None
    assert list(local.to_df().status) == ["succeeded", "succeeded", "failed"] * 3
    assert remote.to_df()[SAME_COLUMNS].equals(local.to_df()[SAME_COLUMNS])
    for value in ("status", "output", "tokens", "steps", "cost"):
        assert remote.pivot(value).equals(local.pivot(value)), value
    assert remote.counts() == local.counts()


@pytest.mark.parametrize(
    ("limits", "fanout", "columns", "bound"),
    [
        (None, {"concurrency": 3}, 1, 3),
        (None, {"per_key": 1}, 2, 2),
        ({"openai": 2}, {}, 1, 2),
    ],
    ids=["concurrency", "per_key", "provider_limits"],
)
def test_bounds_hold_across_workers_at_the_server(pool, openai_server, limits, fanout, columns, bound):
    """The fan-out's bounds and the executor's provider limits are held here, for every worker together."""
    ex = Executor(provider_limits=limits)
    try:
        assert 2 <= fan_out_at_server(ex, pool, openai_server, columns, **fanout) <= bound
    finally:
        ex.close()


def test_a_killed_worker_fails_its_cells_and_retry_failed_reruns_them(pool, tmp_path):
    gate = tmp_path / "gate"
    ex = Executor()
    agent = Agent(name="slow", model=gated_model(gate, "scale-kill"))
    fan = ex.fanout(agent, [f"q{i}" for i in range(8)], backend=pool)
    wait_until(lambda: fan.counts()["running"] == 8, WAIT)  # every cell is on a worker, waiting at the gate
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in pool.pids, WAIT)
    gate.touch()
    fan.wait(WAIT)
    check_lost_then_retried(fan, f"worker process {victim} ")
    assert victim not in pool.pids and len(pool.pids) == 2  # a fresh worker took the dead one's place
    ex.close()


def test_cancel_ends_every_cell_and_the_workers_stay_usable(pool, tmp_path):
    gate = tmp_path / "gate"  # never opened while the fan-out runs: only cancel() ends its cells
    ex = Executor()
    try:
        check_cancel_ends_every_cell(ex, pool, gate, "scale-cancel", lambda: pool.pids)
    finally:
        gate.touch()  # lets the workers' cancelled model calls' threads, if any, go
        ex.close()


def test_what_cannot_be_sent_is_a_backend_error_naming_it_before_any_cell_starts(pool):
    lock = threading.Lock()

    @tool
    def guarded(key: str) -> str:
        """Look a key up, one at a time."""
        with lock:
            return key

    ex = Executor()
    with pytest.raises(BackendError, match="guarded"):
        ex.fanout(Agent(name="locked", tools=[guarded]), ["p", "q"], backend=pool)
    assert ex.runs == []

    with socket.socket() as sock:

        def on_a_socket(messages, tools):
            return sim.reply(str(sock.fileno()))

        model = sim.function(on_a_socket, name="scale-socket")
        with pytest.raises(BackendError, match="sim/fn-scale-socket"):
            ex.fanout(Agent(name="wired", model=model), ["p"], backend=pool)
    assert ex.runs == []
    ex.close()


def test_an_executor_budget_a_pipeline_or_an_unknown_backend_is_a_backend_error(pool):
    agent = Agent(name="qa")
    ex = Executor(budget=Budget(max_usd=1.0))
    with pytest.raises(BackendError, match="budget"):
        ex.fanout(agent, ["p"], backend=pool)
    assert ex.runs == []
    ex.close()

    ex = Executor()
    with pytest.raises(BackendError, match="pipeline"):
        ex.fanout(prompts=["p"], agents=[Pipeline([agent])], backend=pool)
    with pytest.raises(BackendError, match="threads"):
        ex.fanout(agent, ["p"], backend="threads")
    assert ex.runs == [] and issubclass(BackendError, ConfigError)
    ex.close()


def test_sinks_store_and_tables_hear_every_cell_with_the_parents_run_ids(pool):
    sink, store = MemorySink(), MemoryStore()
    ex = Executor(sinks=[sink], store=store)
    fan = ex.fanout(
        Agent(name="qa", tools=[shout]), ["a", "b", "c"], models=[tool_then_reply(), sim.echo()], backend=pool
    ).wait(WAIT)
    assert (fan.to_df().status == "succeeded").all()
    for run in fan.runs:
        heard = sink.run_events(run.run_id)
        assert heard == run.log.events
        assert isinstance(heard[0], RunStarted) and isinstance(heard[-1], RunFinished)
        assert [e.seq for e in heard] == list(range(len(heard)))
        wait_until(lambda run=run: store.events(run.run_id) == run.log.events, WAIT)
    run_ids = set(fan.to_df().run_id)
    runs = ex.runs_df()
    assert run_ids <= set(runs.run_id)
    assert set(runs[runs.run_id.isin(run_ids)].status) == {"succeeded"}
    steps = ex.steps_df()
    assert set(steps.run_id) >= run_ids
    cells = steps[steps.run_id.isin(run_ids)]
    assert set(cells.kind) == {"model", "tool"} and "shout" in set(cells.name)
    ex.close()


def test_close_stops_the_executors_own_workers(tmp_path):
    ex = Executor()
    fan = ex.fanout(Agent(name="qa"), ["a", "b", "c"], backend="processes").wait(WAIT)
    assert (fan.to_df().status == "succeeded").all()
    pool = fan.backend
    assert isinstance(pool, ProcessPool) and ex.fanout(Agent(name="qa"), ["d"], backend="processes").backend is pool
    pids = pool.pids
    assert len(pids) == pool.size
    ex.close()
    wait_until(lambda: all(gone(pid) for pid in pids), WAIT)
    assert pool.pids == []


def test_a_garbage_collected_executor_leaves_no_worker_behind():
    ex = Executor()
    fan = ex.fanout(Agent(name="qa"), ["a", "b"], backend="processes").wait(WAIT)
    pids = fan.backend.pids
    assert pids
    pool = weakref.ref(fan.backend)
    del ex, fan
    wait_until(lambda: gc.collect() >= 0 and pool() is None, WAIT)
    wait_until(lambda: all(gone(pid) for pid in pids), WAIT)


def _allow_small(request: Any) -> bool:
    return request.arguments["key"] != "big"


def test_asks_in_workers_are_answered_by_on_ask_or_denied_and_approver_code_is_refused(pool):
    """A worker has no person and no ``run.approve()``: ``on_ask`` answers there, without it the ask is denied
    (as in a script), and ``approver='code'`` (which would wait for code in this process) is refused up front."""

    @tool
    def write(key: str) -> str:
        """Writes a key."""
        return f"wrote {key}"

    def once(messages: list[dict], tools: list[dict]) -> Any:
        if messages[-1]["role"] == "tool":
            return sim.reply(messages[-1]["content"])
        return sim.call("write", key=messages[-1]["content"])

    agent = Agent(name="writer", tools=[write], model=sim.function(once, name="scale-ask"))
    ex = Executor(policy=Policy(on_ask=_allow_small).ask("write"))
    df = ex.fanout(agent, ["small", "big"], backend=pool).wait(WAIT).to_df()
    assert list(df.output) == ["wrote small", df.output[1]] and "denied" in df.output[1]
    events = [type(e).__name__ for e in ex.fanout(agent, ["small"], backend=pool).wait(WAIT).runs[0].events]
    assert "ApprovalRequested" in events and "ApprovalResolved" in events  # the ask is in the parent's log
    ex.close()

    ex = Executor(policy=Policy().ask("write"))
    df = ex.fanout(agent, ["small"], backend=pool).wait(WAIT).to_df()
    assert "denied" in df.output[0] and "no approver" in df.output[0]
    ex.close()

    ex = Executor(policy=Policy(approver="code").ask("write"))
    with pytest.raises(BackendError, match="approver='code'"):
        ex.fanout(agent, ["small"], backend=pool)
    assert ex.runs == []
    ex.close()
