"""``max_runtime_s`` and ``cancel()`` are hard bounds, whatever a tool or a model call does."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time

import pytest

from executus_nb import Agent, Executor, RunStatus, sim, tool
from executus_nb.errors import StuckCallWarning
from executus_nb.model.call import Completion
from executus_nb.tool import stuck_tool_calls
from executus_nb.types.events import RunFinished, ToolCallStarted
from executus_nb.types.usage import Usage
from tests.waiting import WAIT, script_exit, wait_until

BOUND = 1.0  # the run is finished within this long of its bound


def finished_at(run) -> list[float]:
    """A list that receives the moment (perf_counter) the run's RunFinished is recorded."""
    moments: list[float] = []
    run.log.subscribe(lambda ev: moments.append(time.perf_counter()) if ev.kind == "run_finished" else None)
    return moments


@pytest.fixture
def settled():
    """Every let-go call of the test has ended before the next test starts."""
    wait_until(lambda: stuck_tool_calls() == 0)
    yield
    wait_until(lambda: stuck_tool_calls() == 0)


def stubborn_async(seconds: float = 2, name: str = "stubborn"):
    """An async tool that swallows the first cancellation and goes on sleeping."""

    @tool(name=name, timeout_s=30)
    async def stubborn() -> str:
        """Ignores cancellation."""
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(seconds)
        return "late"

    return stubborn


def stubborn_until(gate: threading.Event, name: str = "stubborn"):
    """An async tool that swallows cancellation and goes on until ``gate`` is set (the test's end)."""

    @tool(name=name, timeout_s=30)
    async def stubborn() -> str:
        """Ignores cancellation."""
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            deadline = time.monotonic() + WAIT
            while not gate.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        return "late"

    return stubborn


def hung_sync(gate: threading.Event, name: str = "stubborn"):
    @tool(name=name, timeout_s=None)
    def stubborn() -> str:
        """Never returns on its own."""
        gate.wait(WAIT)
        return "late"

    return stubborn


@pytest.fixture
def gate():
    event = threading.Event()
    yield event
    event.set()


def assert_closed(run, status: RunStatus, error_type: str) -> None:
    result = run.result
    assert result.status is status
    assert result.error.type == error_type
    assert isinstance(run.events[-1], RunFinished)
    started = {ev.step for ev in run.events if ev.kind in ("tool_call_started", "model_call_started")}
    ended = {ev.step for ev in run.events if ev.kind in ("tool_call_finished", "model_call_finished")}
    assert started == ended
    tool_steps = [s for s in result.steps if s.kind == "tool"]
    assert tool_steps and all(s.error_type == error_type for s in tool_steps)


@pytest.mark.parametrize("kind", ["async-swallows-cancel", "sync-never-returns"])
def test_max_runtime_is_a_hard_bound(executor, warm, settled, gate, kind):
    stubborn = stubborn_async() if kind.startswith("async") else hung_sync(gate)
    model = sim.scripted([sim.call("stubborn"), sim.reply("never")])
    with pytest.warns(StuckCallWarning, match="'stubborn'"):
        started = time.perf_counter()
        run = executor.run(Agent(tools=[stubborn], model=model, max_runtime_s=1.5), "go")
        moments = finished_at(run)
        run.wait(timeout=WAIT)
    assert moments and moments[0] - started < 1.5 + BOUND
    assert_closed(run, RunStatus.TIMEOUT, "RunTimeout")
    assert "max_runtime_s=1.5" in run.result.error.message
    assert stuck_tool_calls() == 1  # the stubborn call is let go and counted


@pytest.mark.parametrize("kind", ["async-swallows-cancel", "sync-never-returns"])
def test_cancel_is_a_hard_bound(executor, warm, settled, gate, kind):
    stubborn = stubborn_async() if kind.startswith("async") else hung_sync(gate)
    model = sim.scripted([sim.call("stubborn"), sim.reply("never")])
    run = executor.run(Agent(tools=[stubborn], model=model), "go")
    moments = finished_at(run)
    wait_until(lambda: any(isinstance(ev, ToolCallStarted) for ev in run.events))
    time.sleep(0.1)  # the tool is inside its sleep
    cancelled = time.perf_counter()
    assert run.cancel() is True
    run.wait(timeout=WAIT)
    assert moments and moments[0] - cancelled < BOUND
    assert_closed(run, RunStatus.CANCELLED, "RunCancelled")
    assert stuck_tool_calls() == 1


def test_a_stubborn_model_call_is_let_go_and_starts_nothing_more(executor, warm, settled, monkeypatch):
    from executus_nb.run import loop

    ran: list[str] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        ran.append("add")
        return a + b

    async def stubborn_complete(spec, *args, **kwargs):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(1.5)
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
            ],
        }
        return Completion(model=spec.name, message=message, usage=Usage(), finish_reason="tool_calls", latency_s=0)

    monkeypatch.setattr(loop, "complete", stubborn_complete)
    with pytest.warns(StuckCallWarning, match="a step of run .* ignored cancellation"):
        started = time.perf_counter()
        run = executor.run(Agent(tools=[add], model=sim.scripted([sim.reply("x")]), max_runtime_s=1), "go")
        moments = finished_at(run)
        result = run.wait(timeout=WAIT)
    assert moments and moments[0] - started < 1 + BOUND
    assert result.status is RunStatus.TIMEOUT
    assert "left running" in result.error.message and "stuck_tool_calls()" in result.error.message
    (step,) = result.steps
    assert (step.kind, step.ok, step.error_type) == ("model", False, "RunTimeout")
    assert stuck_tool_calls() == 1
    count = len(run.events)
    wait_until(lambda: stuck_tool_calls() == 0)  # the stubborn call returns a tool call…
    assert ran == []  # …which never runs
    assert len(run.events) == count and isinstance(run.events[-1], RunFinished)  # and nothing is recorded


def test_a_tool_that_obeys_cancellation_is_not_counted(executor, warm, settled):
    @tool(name="slow", timeout_s=30)
    async def slow() -> str:
        """Sleeps."""
        await asyncio.sleep(10)
        return "late"

    model = sim.scripted([sim.call("slow"), sim.reply("never")])
    result = executor.run(Agent(tools=[slow], model=model, max_runtime_s=0.3), "go").wait(timeout=WAIT)
    assert result.status is RunStatus.TIMEOUT
    assert "left running" not in result.error.message
    assert stuck_tool_calls() == 0


def test_close_cancels_every_run_and_waits_for_no_hung_tool(warm, settled, gate):
    executor = Executor()
    tools = [hung_sync(gate, "hung"), stubborn_until(gate, "stubborn")]  # both still running when counted
    runs = [
        executor.run(Agent(tools=[t], model=sim.scripted([sim.call(t.name), sim.reply("never")])), "go") for t in tools
    ]
    for run in runs:
        wait_until(lambda run=run: any(isinstance(ev, ToolCallStarted) for ev in run.events))
    started = time.perf_counter()
    executor.close()
    assert time.perf_counter() - started < BOUND
    assert [run.status for run in runs] == [RunStatus.CANCELLED, RunStatus.CANCELLED]
    assert stuck_tool_calls() == 2


CLOSE_SCRIPT = textwrap.dedent("""
    import time
    from executus_nb import Agent, Executor, sim, tool

    @tool(timeout_s=None)
    def hangs() -> str:
        \"\"\"Hangs for an hour.\"\"\"
        time.sleep(3600)
        return "late"

    with Executor() as executor:
        run = executor.run(Agent(tools=[hangs], model=sim.scripted([sim.call("hangs"), sim.reply("x")])), "go")
        while not any(ev.kind == "tool_call_started" for ev in run.events):
            time.sleep(0.01)
    print(run.status.value, flush=True)
""")


def test_a_script_whose_tool_hangs_exits_once_the_executor_is_closed():
    done = script_exit(CLOSE_SCRIPT)  # its line is printed once the executor is closed
    assert done.line == "cancelled", done.stderr
    assert done.returncode == 0, done.stderr
    assert done.exit_s < 2.0
