"""A script's background loop is shut down cleanly at exit: tasks cancelled and awaited, no stray output."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script(body: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
    return done, time.monotonic() - started


# The run is timed inside the script: what is bounded here is only what happens after it.
_PRELUDE = """
    import asyncio, atexit, time
    from executus_nb import Agent, Executor, sim, tool

    @tool
    def add(a: int, b: int) -> int:
        '''Add.'''
        return a + b

    model = sim.scripted([sim.call("add", a=1, b=2), sim.reply("three")])
    runs = [Executor().run(Agent(name=f"a{i}", tools=[add], model=model, stream=i == 1), "go") for i in range(2)]
    print([r.wait(timeout=200, quiet=True).output for r in runs], flush=True)
    ended = time.monotonic()
    atexit.register(lambda: print(f"exit after {time.monotonic() - ended:.2f}", flush=True))  # runs last (LIFO)
"""


def _exit_seconds(stdout: str) -> float:
    return float(stdout.rsplit("exit after ", 1)[1].split()[0])


def test_a_script_with_sim_runs_exits_quietly_and_quickly_cancelling_what_is_left():
    # one subprocess for all of it: each pays the litellm import
    done, _ = _script(
        _PRELUDE.replace(
            "    ended = time.monotonic()",
            textwrap.indent(
                textwrap.dedent("""
        from executus_nb.run.background import background_loop

        async def forever():
            try:
                await asyncio.sleep(3600)
            finally:
                print("cleaned up", flush=True)

        async def stubborn():  # swallows its cancellation: exit must not wait for it for ever
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass

        asyncio.run_coroutine_threadsafe(forever(), background_loop())
        asyncio.run_coroutine_threadsafe(stubborn(), background_loop())
        time.sleep(0.1)
        ended = time.monotonic()"""),
                "    ",
            ),
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Task was destroyed but it is pending!", nothing else either
    assert done.stdout.startswith("['three', 'three']")
    assert "cleaned up" in done.stdout  # a task left on the loop was cancelled and ran its cleanup
    assert _exit_seconds(done.stdout) < 4.0  # the 2 s bound for the stubborn task, plus headroom


def test_litellm_exit_flush_runs_after_the_background_loop_is_shut_down():
    # litellm's logging worker flushes its queue at exit in the main thread; while the background
    # loop still ran, both ran the same callbacks ("cannot reuse already awaited coroutine").
    done, _ = _script("""
        from executus_nb import Agent, Executor, sim
        from executus_nb.run import background
        print(Executor().run(Agent(name="a", model=sim.scripted([sim.reply("hi")])), "go").wait(quiet=True).output)
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as worker
        seen = []
        def spy(level, message, _log=worker._safe_log):
            if not seen:
                seen.append(background._loop is None)
                print("loop shut down before litellm's flush:", seen[0], flush=True)
            _log(level, message)
        worker._safe_log = spy
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hi", *"loop shut down before litellm's flush: True".split()], done.stdout
    assert done.stderr == ""


def test_a_streamed_step_that_swallowed_cancellation_leaves_no_error_at_exit():
    # the step's async generator is still running when the loop shuts down; it cannot be closed
    done, _ = _script("""
        import asyncio, warnings
        from executus_nb import Agent, Executor, sim
        from executus_nb.errors import StuckCallWarning
        warnings.simplefilter("ignore", StuckCallWarning)

        async def stubborn(messages, tools):
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    pass

        agent = Agent(name="s", model=sim.function(stubborn), max_runtime_s=0.5, stream=True)
        print(Executor().run(agent, "go").wait(quiet=True).status.value, flush=True)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["timeout"]
    assert done.stderr == ""  # not "an error occurred during closing of asynchronous generator"
