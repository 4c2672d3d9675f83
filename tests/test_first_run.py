"""The first run of a process: litellm's import and warm-up are set-up, outside bounds and latencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter, so the run really is the first one (litellm not yet imported).
SCRIPT = """
import json, sys, time
from executus_nb import Agent, Executor, sim, tool

@tool
def add(a: int, b: int) -> int:
    '''Add two integers.'''
    return a + b

stream = sys.argv[1] == "stream"
if sys.argv[1] == "nested":  # as in a kernel: asyncio patched by nest_asyncio2 before the first run
    import asyncio, nest_asyncio2
    kernel_loop = asyncio.new_event_loop()
    nest_asyncio2.apply(kernel_loop)
model = sim.scripted([sim.call("add", a=1, b=2), sim.reply("3")])
executor = Executor()
agent = Agent(name="first", tools=[add], model=model, stream=stream, max_runtime_s=1.0)
started = time.perf_counter()
first = executor.run(agent, "1+2?").wait(timeout=120, quiet=True)
elapsed = time.perf_counter() - started
second = executor.run(agent, "1+2?").wait(timeout=120, quiet=True)
print(json.dumps({
    "elapsed": elapsed,
    "first": [first.status.value, str(first.error), [s.duration_s for s in first.steps if s.kind == "model"]],
    "first_duration": first.duration_s,
    "second": [second.status.value, [s.duration_s for s in second.steps if s.kind == "model"]],
}))
if sys.argv[1] == "nested":
    kernel_loop.close()
import gc
gc.collect()  # an event loop left open by the warm-up would warn here
"""


@pytest.mark.parametrize("mode", ["plain", "stream", "nested"])
def test_first_run_bound_and_latency_exclude_litellm_import_and_warm_up(mode):
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning, no "Task was destroyed" from the warm-up's private loop
    figures = json.loads(done.stdout)
    status, error, latencies = figures["first"]
    # The import alone takes seconds: the whole first run took longer than its 1 s bound, yet it succeeded.
    assert figures["elapsed"] > 1.0
    assert (status, error) == ("succeeded", "None")
    assert figures["second"][0] == "succeeded"
    set_up = figures["elapsed"] - sum(latencies)
    # The first call's latency is the call's own, like the second run's, not litellm's one-off warm-up.
    assert latencies[0] < set_up / 10
    assert latencies[0] < max(figures["second"][1]) + 0.25
    # Nor does the run's own duration (runs_df, the view's elapsed time) include the set-up.
    assert figures["first_duration"] < set_up / 4
