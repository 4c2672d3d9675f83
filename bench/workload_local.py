"""Workloads 4 and 6, executus_nb on its own (no peer has either): the live view's cost, and memory and analysis
after many finished runs.  Both use the offline ``sim/`` model (no HTTP).

4. bench_runview.py's 300-step run (150 tool calls, 151 model calls), headless against with its RunView
   attached, the widget's messages counted by a stand-in comm (no browser, no kernel).
6. 10,000 finished ``sim/`` runs (a tool call, then the answer) kept in one executor: the process's RSS, and
   the time to build ``runs_df()``, ``steps_df()`` and ``usage_df()`` over them.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import psutil
from alternate import Sample, alternate, figure, peak_rss_mb
from report import at_most, row

VIEW_TARGET = 1.10
RSS_TARGET_MB = 500
FRAME_TARGET_S = 1.0
MANY_RUNS = 10_000


async def view(opts: Any) -> dict[str, Any]:
    """Workload 4."""
    import comm
    from bench_runview import TOOLS, CountingComm, one

    comm.create_comm = lambda *a, **kw: CountingComm(*a, **kw)
    rounds = 3 if opts.quick else 9

    async def viewed() -> int:
        before = CountingComm.sent
        await one(True)
        return CountingComm.sent - before

    async def headless() -> int:
        await one(False)
        return 0

    samples = await alternate(
        {"headless": headless, "with RunView": viewed},
        rounds,
        after=lambda name, sample, sent: {**sample, "messages": sent},
    )
    base = figure(samples["headless"], "wall_s")["median"]
    fig = figure(samples["with RunView"], "wall_s")
    ratio = fig["median"] / base
    paired = [v["wall_s"] / h["wall_s"] for h, v in zip(samples["headless"], samples["with RunView"], strict=True)]
    messages = figure(samples["with RunView"], "messages")
    steps = 2 * TOOLS + 1
    return {
        "title": "Widget overhead: a 300-step sim/ run with and without a RunView",
        "about": f"bench_runview.py's run ({TOOLS} tool calls, {TOOLS + 1} model calls: {steps} steps), a fresh "
        f"executor each, {rounds} rounds alternating; the view's comm messages counted, no browser.",
        "baseline": "headless",
        "params": {"steps": steps, "rounds": rounds},
        "samples": samples,
        "rows": [
            row("headless", "wall", figure(samples["headless"], "wall_s"), unit="s", ratio=1.0),
            row(
                "with RunView",
                "wall",
                fig,
                unit="s",
                ratio=ratio,
                target=f"≤ {VIEW_TARGET}×",
                met=at_most(ratio, VIEW_TARGET, "×"),
                note=f"per-round pairs {min(paired):.3f}–{max(paired):.3f}×",
            ),
            row("with RunView", "widget messages per run", messages, note=f"for {steps} steps"),
        ],
    }


async def memory(opts: Any) -> dict[str, Any]:
    """Workload 6."""
    from peers import lookup

    from executus_nb import Agent, Executor, sim, tool

    def script(messages: list[dict[str, Any]], tools: Any) -> Any:
        if messages[-1]["role"] == "tool":
            return sim.reply("done")
        return sim.call("lookup", key="k")

    n = 2_000 if opts.quick else MANY_RUNS
    rounds = 3 if opts.quick else 5
    agent = Agent(name="mem", tools=[tool(lookup)], model=sim.function(script))
    executor = Executor()
    await executor.arun(agent, "warm")  # litellm imported, the sim/ provider registered
    executor.runs.clear()
    gc.collect()
    me = psutil.Process()
    rss_before = me.memory_info().rss / 2**20
    started = time.perf_counter()
    fan = executor.fanout(agent, [f"q{i}" for i in range(n)], concurrency=100)
    await fan
    run_s = time.perf_counter() - started
    counts = fan.counts()
    assert counts["succeeded"] == n, counts
    del fan
    gc.collect()
    rss_after = me.memory_info().rss / 2**20
    print(f"  {n:,} runs in {run_s:.1f} s; RSS {rss_before:.0f} → {rss_after:.0f} MB", flush=True)

    def frame(build: Any) -> Any:
        async def go() -> int:
            return len(build())

        return go

    jobs = {
        "runs_df()": frame(executor.runs_df),
        "steps_df()": frame(executor.steps_df),
        "usage_df()": frame(executor.usage_df),
    }
    samples: dict[str, list[Sample]] = await alternate(
        jobs, rounds, warmup=False, after=lambda name, sample, rows: {**sample, "rows": rows}
    )
    peak = peak_rss_mb()
    quick = f" (quick: {n:,} runs, the target is for {MANY_RUNS:,})" if n != MANY_RUNS else ""
    rows = [
        row(
            "executus_nb",
            f"RSS with {n:,} finished runs",
            {"median": rss_after, "min": rss_after, "max": rss_after},
            unit="MB",
            target=f"≤ {RSS_TARGET_MB} MB",
            met="" if quick else at_most(rss_after, RSS_TARGET_MB, " MB"),
            note=f"{rss_before:.0f} MB before the runs, {1000 * (rss_after - rss_before) / n:.0f} MB per 1,000 runs"
            + quick,
        ),
        row("executus_nb", "peak RSS", {"median": peak, "min": peak, "max": peak}, unit="MB"),
        row(
            "executus_nb",
            f"{n:,} runs (fan-out, concurrency 100)",
            {"median": run_s, "min": run_s, "max": run_s},
            unit="s",
        ),
    ]
    for name in jobs:
        fig = figure(samples[name], "wall_s")
        rows.append(
            row(
                "executus_nb",
                name,
                fig,
                unit="s",
                target=f"≤ {FRAME_TARGET_S:g} s",
                met="" if quick else at_most(fig["median"], FRAME_TARGET_S, " s"),
                note=f"{int(samples[name][0]['rows']):,} rows" + quick,
            )
        )
    return {
        "title": f"Memory and analysis: {n:,} finished sim/ runs in one executor",
        "about": f"Each run a tool call then the answer (2 model calls, 1 tool call) on `sim.function`; RSS after "
        f"`gc.collect()`; each DataFrame built {rounds} times, the three alternating.",
        "baseline": "—",
        "params": {"runs": n, "rounds": rounds},
        "samples": samples,
        "rows": rows,
    }
