"""What the SQLite store costs a fan-out: 1,000 runs × 2 model calls at concurrency 100, with and without a store.

The fan-out of ``bench_fanout.py`` (the loopback OpenAI-compatible server in a child process,
50 ms latency, a tool call then a text reply), run in one process with rounds alternating:

* plain — ``Executor()``;
* store — ``Executor(store=SQLiteStore(<a fresh file per round>))``, timed until the fan-out
  finished *and* until ``store.flush()`` returned (every event on disk).

Medians are reported, with the ratio store / plain of the wall times (target ≤ 1.10, taken on
the time with the flush), the CPU ratio, the median of each round's own pair (store / plain,
less moved by other work on the machine), the events written per round and the commits they
took.  Every stored round is checked: rows == the events of its runs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fanout import CALLS_PER_RUN, CONCURRENCY, INSTRUCTIONS, LATENCY_S, RUNS, ToolServer, check, spread  # noqa: E402

ROUNDS = 5
WARMUP_RUNS = 200
TARGET = 1.10


async def fanout(executor, agent, model: dict, n: int) -> tuple[float, float]:
    """One fan-out of ``n`` prompts; (wall s, cpu s) until its last run finished."""
    executor.runs.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    fan = executor.fanout(agent, [f"q{i}" for i in range(n)], models=[model], concurrency=CONCURRENCY)
    await fan
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    check(fan)
    return wall, cpu


async def plain_round(agent, model: dict, n: int) -> dict[str, float]:
    from executus_nb import Executor

    executor = Executor()
    wall, cpu = await fanout(executor, agent, model, n)
    return {"wall": wall, "cpu": cpu, "flushed": wall, "flushed_cpu": cpu}


async def store_round(agent, model: dict, n: int, folder: str, number: int) -> dict[str, float]:
    from executus_nb import Executor, SQLiteStore

    store = SQLiteStore(Path(folder) / f"round-{number}.db")
    executor = Executor(store=store)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    wall, cpu = await fanout(executor, agent, model, n)
    await asyncio.to_thread(store.flush)
    flushed, flushed_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    events = sum(len(run.log.events) for run in executor.runs)
    assert store.count() == events and store.failure is None, (store.count(), events, store.failure)
    store.close()
    return {
        "wall": wall,
        "cpu": cpu,
        "flushed": flushed,
        "flushed_cpu": flushed_cpu,
        "events": events,
        "commits": store.commits,
    }


async def main() -> None:
    from executus_nb import Agent, tool

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    load_start = os.getloadavg()[0]
    plain, stored = [], []
    with tempfile.TemporaryDirectory() as folder, (server := ToolServer()) as base_url:
        model = {"model": "openai/test-model", "api_base": base_url, "api_key": "sk-bench"}
        agent = Agent(name="bench", instructions=INSTRUCTIONS, tools=[lookup])
        await plain_round(agent, model, WARMUP_RUNS)
        await store_round(agent, model, WARMUP_RUNS, folder, 0)
        for i in range(ROUNDS):
            first, second = (plain_round, store_round) if i % 2 == 0 else (store_round, plain_round)
            for step in (first, second):
                if step is plain_round:
                    plain.append(await plain_round(agent, model, RUNS))
                else:
                    stored.append(await store_round(agent, model, RUNS, folder, i + 1))
            print(
                f"round {i + 1}: plain {plain[-1]['wall']:.2f} s wall / {plain[-1]['cpu']:.2f} s cpu   "
                f"store {stored[-1]['wall']:.2f} s wall ({stored[-1]['flushed']:.2f} s flushed) / "
                f"{stored[-1]['flushed_cpu']:.2f} s cpu",
                flush=True,
            )
    load_end = os.getloadavg()[0]

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    p_wall, s_wall, s_flushed = median(plain, "wall"), median(stored, "wall"), median(stored, "flushed")
    p_cpu, s_cpu = median(plain, "cpu"), median(stored, "flushed_cpu")
    ratio = s_flushed / p_wall
    print()
    print("=" * 72)
    print(
        f"store bench: {RUNS} runs × {CALLS_PER_RUN} model calls, concurrency {CONCURRENCY}, "
        f"server latency {1000 * LATENCY_S:.0f} ms, {ROUNDS} rounds alternating (medians), {os.cpu_count()} CPUs"
    )
    print(f"  load average (1 min):         {load_start:.2f} at start, {load_end:.2f} at end")
    print(f"  server:                       {server.summary}")
    print(
        f"  events written per round:     {int(median(stored, 'events'))} "
        f"in {int(median(stored, 'commits'))} commits (median)"
    )
    print(f"  plain  (Executor()):          {p_wall:.2f} s wall (rounds {spread([r['wall'] for r in plain])})")
    print(
        f"  store  (Executor(store=...)): {s_wall:.2f} s wall to the last run, {s_flushed:.2f} s with the flush "
        f"(rounds {spread([r['flushed'] for r in stored])})"
    )
    print(f"  CPU:                          plain {p_cpu:.2f} s, store {s_cpu:.2f} s (ratio {s_cpu / p_cpu:.3f})")
    paired = statistics.median(s["flushed"] / p["wall"] for s, p in zip(stored, plain, strict=True))
    paired_cpu = statistics.median(s["flushed_cpu"] / p["cpu"] for s, p in zip(stored, plain, strict=True))
    print(f"  ratio store / plain (wall):   {s_wall / p_wall:.3f} to the last run")
    print(f"  per-round ratios (median):    {paired:.3f} wall, {paired_cpu:.3f} CPU (each round's pair)")
    print(
        f"  ratio store / plain (wall):   {ratio:.3f} with every event on disk   (target ≤ {TARGET})  "
        f"{'PASS' if ratio <= TARGET else 'FAIL'}"
    )
    print("=" * 72)


if __name__ == "__main__":
    asyncio.run(main())
