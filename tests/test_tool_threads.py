"""Tool calls that never come back: they starve no other tool, block no exit, and are counted."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time

import pytest

from executus_nb import Agent, RunStatus, sim, tool
from executus_nb.errors import StuckCallWarning, ToolTimeoutError
from executus_nb.tool import stuck_tool_calls
from tests.waiting import WAIT, script_exit, wait_until


@pytest.fixture
def release():
    """An event the hanging tools wait on; set at the end so their threads return."""
    wait_until(lambda: stuck_tool_calls() == 0)  # calls left by earlier tests have returned
    gate = threading.Event()
    yield gate
    gate.set()
    wait_until(lambda: stuck_tool_calls() == 0)


def hanging_tool(gate: threading.Event, timeout_s: float = 0.2):
    @tool(name="hangs", timeout_s=timeout_s)
    def hangs(i: int) -> str:
        """Never returns on its own."""
        gate.wait(WAIT)
        return "late"

    return hangs


@tool(timeout_s=5)
def trivial() -> str:
    """Answers at once."""
    return "ok"


def test_32_hung_sync_tools_do_not_starve_a_trivial_one(release):
    hangs = hanging_tool(release)

    async def main():
        hung = await asyncio.gather(*(hangs.invoke({"i": i}) for i in range(32)), return_exceptions=True)
        started = time.perf_counter()
        answer = await trivial.invoke({})
        return hung, answer, time.perf_counter() - started

    with pytest.warns(StuckCallWarning) as warned:
        hung, answer, elapsed = asyncio.run(main())
    assert all(isinstance(err, ToolTimeoutError) for err in hung)
    assert answer == "ok"
    assert elapsed < 1.0
    assert stuck_tool_calls() == 32
    # the figure is in each error and in a logged warning
    counts = sorted(int(str(err).split("(")[1].split()[0]) for err in hung)
    assert counts == list(range(1, 33))
    assert "hangs timed out after 0.2 s; its thread is still running" in str(hung[0])
    assert "stuck_tool_calls()" in str(hung[0])
    assert sum("'hangs' is still running in its thread" in str(w.message) for w in warned) == 32
    release.set()
    wait_until(lambda: stuck_tool_calls() == 0)  # a stuck call that returns is no longer counted


def test_a_sync_tool_that_finishes_in_time_is_not_counted(release):
    @tool(timeout_s=5)
    def quick() -> int:
        """Quick."""
        return 7

    assert asyncio.run(quick.invoke({})) == 7
    assert stuck_tool_calls() == 0


def test_hung_sync_tools_of_cancelled_runs_give_their_threads_back(executor, warm, release):
    entered: list[int] = []  # the calls whose thread runs the tool (a started call may not have one yet)

    @tool(name="hangs", timeout_s=None)
    def hangs(i: int) -> str:
        """Never returns on its own."""
        entered.append(i)
        release.wait(WAIT)
        return "late"

    model = sim.scripted([sim.calls(*(sim.call("hangs", i=i) for i in range(20))), sim.reply("never")])
    run = executor.run(Agent(tools=[hangs], model=model), "go")
    wait_until(lambda: len(entered) == 20)  # every call is in its thread, so cancelling lets each one go
    run.cancel()
    assert run.wait(timeout=WAIT).status is RunStatus.CANCELLED
    wait_until(lambda: stuck_tool_calls() == 20)  # each hung call is let go and counted
    model = sim.scripted([sim.call("trivial"), sim.reply("done")])
    result = executor.run(Agent(tools=[trivial], model=model), "go").wait(timeout=WAIT)
    assert result.ok and result.steps[1].result == "ok"


def test_an_async_tool_that_swallows_cancellation_is_bounded_by_its_timeout():
    @tool(timeout_s=0.2)
    async def stubborn() -> str:
        """Ignores the first cancellation."""
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(3)
        return "late"

    async def main():
        started = time.perf_counter()
        with pytest.raises(ToolTimeoutError) as caught:
            await stubborn.invoke({})
        elapsed = time.perf_counter() - started
        counted = stuck_tool_calls()
        while stuck_tool_calls():  # let the stubborn task end before the loop closes
            await asyncio.sleep(0.05)
        return caught.value, elapsed, counted

    with pytest.warns(StuckCallWarning, match="'stubborn' ignored cancellation"):
        error, elapsed, counted = asyncio.run(main())
    assert elapsed < 0.2 + 0.5
    assert counted == 1
    assert "stubborn timed out after 0.2 s and ignored cancellation" in str(error)
    assert "1 stuck tool call(s)" in str(error)


SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    from executus_nb import tool

    @tool(timeout_s=0.2)
    def hangs(i: int) -> str:
        \"\"\"Hangs for an hour.\"\"\"
        time.sleep(3600)
        return "late"

    @tool
    def trivial() -> str:
        \"\"\"Answers at once.\"\"\"
        return "ok"

    async def main():
        await asyncio.gather(*(hangs.invoke({"i": i}) for i in range(32)), return_exceptions=True)
        started = time.perf_counter()
        answer = await trivial.invoke({})
        return answer, time.perf_counter() - started

    answer, elapsed = asyncio.run(main())
    print(answer, f"{elapsed:.3f}", flush=True)
""")


def test_a_process_with_32_hung_sync_tools_exits_at_once():
    done = script_exit(SCRIPT)
    answer, elapsed = done.line.split()
    assert answer == "ok" and float(elapsed) < 1.0, done.stderr
    assert done.returncode == 0, done.stderr
    assert done.exit_s < 2.0


RUN_SCRIPT = textwrap.dedent("""
    import threading, time
    from executus_nb import Agent, Executor, sim, tool

    @tool(timeout_s=0.2)
    def hangs(i: int) -> str:
        \"\"\"Hangs for ever.\"\"\"
        threading.Event().wait()
        return "late"

    @tool
    def trivial() -> str:
        \"\"\"Answers at once.\"\"\"
        return "ok"

    executor = Executor()
    model = sim.scripted([sim.calls(*(sim.call("hangs", i=i) for i in range(32))), sim.reply("gave up")])
    executor.run(Agent(name="h", tools=[hangs], model=model), "go").wait(quiet=True)
    run = executor.run(Agent(name="t", tools=[trivial], model=sim.scripted([sim.call("trivial"), sim.reply("ok")])), "go")
    result = run.wait(quiet=True)
    print(result.output, f"{run.tool_calls_df().duration_s.iloc[0]:.3f}", flush=True)
""")


def test_a_script_whose_runs_left_32_hung_sync_tools_exits_at_once():
    # as a user writes it: Executor().run(...).wait(), so litellm is loaded and torn down too
    done = script_exit(RUN_SCRIPT)
    answer, elapsed = done.line.split()
    assert answer == "ok" and float(elapsed) < 1.0, done.stderr
    assert done.returncode == 0, done.stderr
    assert done.exit_s < 2.0
