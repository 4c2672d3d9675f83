"""Stream memory: runs of 1,000 and 10,000 text deltas read live with ``run.stream()``, against the same runs
not streamed.

Target: deltas are transient, so the log holds one record per step whatever the number of chunks, the memory a
run holds after it ends does not grow with its deltas beyond the text itself, and a long streamed run's memory
stays flat.  Two shapes, each measured in a fresh interpreter (after a warm-up run) so one figure's freed arenas
do not hide the next one's RSS:

- a long run: the deltas spread over steps of 100 deltas each (10 steps for 1,000, 100 for 10,000);
- one call: all the deltas in a single model call.

Figures: the log's length, the tracemalloc peak during the run, the peak RSS over the run (VmHWM, reset before
it, minus the RSS before it; measured in a separate pass without tracemalloc) and the memory still held after
it; streamed runs minus the same run not streamed.  Within one model call the peak grows with its chunks:
litellm's stream wrapper keeps every chunk of a call (``CustomStreamWrapper.chunks``) and the reply is built
from them (``stream_chunk_builder``); they are freed when the call finishes, so only the call in flight counts.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from executus_nb import Agent, Executor, TextDelta, sim, tool  # noqa: E402
from executus_nb.model.sim import SimToolCall, SimTurn  # noqa: E402

SIZES = (1_000, 10_000)
PER_STEP = 100  # deltas per step in a long run
SHAPES = ("long run", "one call")


@tool
def note() -> str:
    """Note that a step happened."""
    return "ok"


def agent_for(n: int, shape: str, streamed: bool) -> Agent:
    """An agent whose run sends ``n`` deltas: in one call, or over steps of ``PER_STEP`` with a tool call each."""
    steps = n // PER_STEP if shape == "long run" else 1

    def fn(messages: list[dict], tools: list[dict]) -> SimTurn:
        done = sum(1 for m in messages if m.get("role") == "tool")
        text = "w " * (n // steps)
        if done + 1 < steps:
            return SimTurn(text=text, tool_calls=(SimToolCall(name="note", arguments={}),))
        return SimTurn(text=text)

    model = sim.function(fn, name=f"bench-stream-{shape.replace(' ', '-')}-{n}-{streamed}")
    return Agent(name="bench", model=model, tools=[note], stream=streamed, max_steps=steps + 2)


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident memory (``VmRSS``) or its high-water mark (``VmHWM``), in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the next peak is this run's."""
    Path("/proc/self/clear_refs").write_text("5")


def run_once(executor: Executor, agent: Agent, streamed: bool) -> tuple[int, int]:
    """Run ``agent``; streamed runs are read live with ``run.stream()``. (deltas read, events in the log)."""

    async def go() -> tuple[int, int]:
        run = executor.run(agent, "go")
        deltas = 0
        if streamed:
            async for item in run.stream():
                deltas += isinstance(item, TextDelta)
        result = await run
        assert result.status.value == "succeeded", result.error
        return deltas, len(run.events)

    return asyncio.run(go())


def measure(n: int, shape: str, streamed: bool) -> dict[str, Any]:
    """Every figure of one configuration, in this (fresh) interpreter."""
    executor = Executor()
    run_once(executor, agent_for(100, shape, streamed), streamed)  # warm up: litellm, tokenizer, provider
    agent = agent_for(n, shape, streamed)
    gc.collect()
    before = rss_kib()
    reset_peak_rss()
    run_once(executor, agent, streamed)
    rss_peak = rss_kib("VmHWM") - before
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    deltas, events = run_once(executor, agent, streamed)
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "deltas": deltas,
        "events": events,
        "peak": (peak - base) / 1024,
        "held": (held - base) / 1024,
        "rss": rss_peak,
    }


def child(n: int, shape: str, streamed: bool) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--one", str(n), shape, str(int(streamed))],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    header = (
        f"{'shape':<9} {'deltas':>7} {'events':>7} {'peak KiB':>9} {'plain':>7} {'+stream':>8} "
        f"{'RSS KiB':>8} {'plain':>7} {'+stream':>8} {'held KiB':>9} {'plain':>7}"
    )
    print("peak/RSS/held: the streamed run read live; plain: the same run not streamed; +stream: the difference")
    print(header)
    for shape in SHAPES:
        for n in SIZES:
            s, p = child(n, shape, True), child(n, shape, False)
            print(
                f"{shape:<9} {s['deltas']:>7} {s['events']:>7} {s['peak']:>9.0f} {p['peak']:>7.0f} "
                f"{s['peak'] - p['peak']:>8.0f} {s['rss']:>8} {p['rss']:>7} {s['rss'] - p['rss']:>8} {s['held']:>9.0f} {p['held']:>7.0f}"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1")))
    else:
        main()
