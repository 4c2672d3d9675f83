"""Fan-out throughput and fairness: 1,000 runs × 2 model calls at concurrency 100.

Each run asks the loopback OpenAI-compatible server (a child process, fixed
50 ms latency) twice: the server answers a tool call first, then, once the
request carries the tool result, a text reply.  Measured in one process, with
harness and baseline rounds alternating (after one smaller warm-up of each),
medians reported:

* harness   — ``executor.fanout(agent, 1000 prompts, models=[server], concurrency=100)``;
* baseline  — the same 2,000 calls as a bare ``asyncio`` loop over
  ``litellm.acompletion``: 1,000 tasks under ``asyncio.Semaphore(100)``, each
  making its two calls in sequence.

Reported: wall time, CPU time per model call (``time.process_time`` delta /
2,000), the process's peak RSS, and the ratio harness wall / baseline wall.
Target: ratio ≤ 1.15.  Both sides are CPU-bound on a small machine, so the
CPU ratio is printed too, and the load average: other work on the machine
moves wall times far more than CPU times.

Starvation: in one more harness round (not counted in the medians), once
about 500 cells have started, one interactive run is submitted with
``executor.run``; its start latency (submit → ``RunStarted``, and → its first
``ModelCallStarted``) and its total time (submit → finished) are reported.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = 1_000
CALLS_PER_RUN = 2
CONCURRENCY = 100
LATENCY_S = 0.05
ROUNDS = 3
WARMUP_RUNS = 200
STARVE_AFTER = 500  # cells started before the interactive run is submitted
TARGET = 1.15

INSTRUCTIONS = "Be brief."
TOOL_ARGS = '{"key": "k"}'

# The server decides by the conversation: a tool result last → text, else → a tool call.
_CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.openai_server import OpenAIServer, Reply, ToolCall, ToolCalls

def responder(body):
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        return Reply("done")
    return ToolCalls((ToolCall("lookup", {args!r}),))

server = OpenAIServer(latency_s={latency}, responder=responder).start()
print(server.base_url, flush=True)
sys.stdin.read()
print(f"requests={{server.count}} max_concurrency={{server.max_concurrency}}", file=sys.stderr, flush=True)
server.stop()
"""


class ToolServer:
    """``with ToolServer() as base_url:`` — the two-turn server in a child process."""

    def __enter__(self) -> str:
        code = _CHILD.format(root=str(ROOT), latency=LATENCY_S, args=TOOL_ARGS)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.summary = ""
        return self.proc.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        self.summary = self.proc.stderr.read().strip()
        self.proc.wait(timeout=10)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- baseline


async def baseline(lm, model: dict, schema: dict, n: int) -> tuple[float, float]:
    """``n`` tasks × 2 bare ``acompletion`` calls under a semaphore; (wall s, cpu s)."""
    sem = asyncio.Semaphore(CONCURRENCY)
    kwargs = {
        "model": model["model"],
        "api_base": model["api_base"],
        "api_key": model["api_key"],
        "max_retries": 0,
        "timeout": 120.0,
    }

    async def one(i: int) -> None:
        async with sem:
            messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": f"q{i}"}]
            r = await lm.acompletion(messages=messages, tools=[schema], **kwargs)
            call = r.choices[0].message.tool_calls[0]
            messages.append(
                {
                    "role": "assistant",
                    "content": r.choices[0].message.content,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.function.name, "arguments": call.function.arguments},
                        }
                    ],
                }
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "value of k"})
            r = await lm.acompletion(messages=messages, tools=[schema], **kwargs)
            assert r.choices[0].message.content == "done", r

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - wall, time.process_time() - cpu


# --------------------------------------------------------------------------- harness


def check(fan) -> None:
    """Every cell succeeded with exactly two model calls."""
    counts = fan.counts()
    assert counts["succeeded"] == counts["total"], counts
    for run in fan.runs:
        calls = sum(1 for ev in run.log.events if ev.kind == "model_call_finished")
        assert calls == CALLS_PER_RUN and run.result.output == "done", run


async def harness(executor, agent, model: dict, n: int) -> tuple[float, float]:
    """One fan-out of ``n`` prompts; (wall s, cpu s)."""
    executor.runs.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    fan = executor.fanout(agent, [f"q{i}" for i in range(n)], models=[model], concurrency=CONCURRENCY)
    await fan
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    check(fan)
    return wall, cpu


async def starvation(executor, agent, model: dict) -> dict[str, float]:
    """A fan-out round with one interactive run (same tool, so 2 model calls) submitted once ~500 cells started."""
    from executus_nb import Agent

    executor.runs.clear()
    chat = Agent(name="chat", instructions=INSTRUCTIONS, tools=list(agent.tools), model=model)
    wall = time.perf_counter()
    fan = executor.fanout(agent, [f"q{i}" for i in range(RUNS)], models=[model], concurrency=CONCURRENCY)
    while (c := fan.counts())["total"] - c["queued"] < STARVE_AFTER:
        await asyncio.sleep(0.005)
    started_cells = c["total"] - c["queued"]
    seen: dict[str, float] = {}

    def on_event(event) -> None:
        if event.kind in ("run_started", "model_call_started"):
            seen.setdefault(event.kind, time.perf_counter())

    submitted = time.perf_counter()
    run = executor.run(chat, "hi")
    run.log.subscribe(on_event)
    result = await run
    finished = time.perf_counter()
    await fan
    wall = time.perf_counter() - wall
    check(fan)
    assert result.ok and result.output == "done", result
    cell_s = statistics.quantiles((r.result.duration_s for r in fan.runs), n=10)
    return {
        "cells_started_at_submit": started_cells,
        "start_s": seen["run_started"] - submitted,
        "first_call_s": seen["model_call_started"] - submitted,
        "finish_s": finished - submitted,
        "round_wall_s": wall,
        "cell_p50_s": cell_s[4],
        "cell_p90_s": cell_s[8],
    }


# --------------------------------------------------------------------------- main


async def main() -> None:
    from executus_nb import Agent, Executor, tool
    from executus_nb.model.backend import litellm

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    lm = litellm()
    schema = lookup.schema
    rss_start = peak_rss_mb()
    load_start = os.getloadavg()[0]
    with (server := ToolServer()) as base_url:
        model = {"model": "openai/test-model", "api_base": base_url, "api_key": "sk-bench"}
        agent = Agent(name="bench", instructions=INSTRUCTIONS, tools=[lookup])
        executor = Executor()

        await baseline(lm, model, schema, WARMUP_RUNS)
        await harness(executor, agent, model, WARMUP_RUNS)
        rss_warm = peak_rss_mb()

        base, ours = [], []
        for i in range(ROUNDS):
            base.append(await baseline(lm, model, schema, RUNS))
            ours.append(await harness(executor, agent, model, RUNS))
            print(
                f"round {i + 1}: baseline {base[-1][0]:.2f} s wall / {base[-1][1]:.2f} s cpu   "
                f"harness {ours[-1][0]:.2f} s wall / {ours[-1][1]:.2f} s cpu",
                flush=True,
            )
        rss_after_rounds = peak_rss_mb()
        starve = await starvation(executor, agent, model)
        rss_end = peak_rss_mb()
    load_end = os.getloadavg()[0]

    calls = RUNS * CALLS_PER_RUN
    b_wall, h_wall = statistics.median(w for w, _ in base), statistics.median(w for w, _ in ours)
    b_cpu, h_cpu = statistics.median(c for _, c in base), statistics.median(c for _, c in ours)
    ratio = h_wall / b_wall
    floor = RUNS / CONCURRENCY * CALLS_PER_RUN * LATENCY_S
    print()
    print("=" * 72)
    print(
        f"fan-out bench: {RUNS} runs × {CALLS_PER_RUN} model calls, concurrency {CONCURRENCY}, "
        f"server latency {1000 * LATENCY_S:.0f} ms, {ROUNDS} rounds (medians), {os.cpu_count()} CPUs"
    )
    print(f"  load average (1 min):         {load_start:.2f} at start, {load_end:.2f} at end")
    print(f"  server:                       {server.summary}")
    print(f"  latency-only floor:           {floor:.2f} s wall")
    print(
        f"  baseline (bare acompletion):  {b_wall:.2f} s wall (rounds {spread([w for w, _ in base])})   "
        f"{1000 * b_cpu / calls:.2f} ms CPU / model call"
    )
    print(
        f"  harness  (executor.fanout):   {h_wall:.2f} s wall (rounds {spread([w for w, _ in ours])})   "
        f"{1000 * h_cpu / calls:.2f} ms CPU / model call"
    )
    print(
        f"  harness CPU overhead:         {1000 * (h_cpu - b_cpu) / calls:+.2f} ms / model call "
        f"(CPU ratio {h_cpu / b_cpu:.3f})"
    )
    print(
        f"  ratio harness / baseline:     {ratio:.3f}   (wall; target ≤ {TARGET})  "
        f"{'PASS' if ratio <= TARGET else 'FAIL'}"
    )
    print(
        f"  peak RSS (process peak):      {rss_end:.0f} MB   (at start {rss_start:.0f}, "
        f"after warm-up {rss_warm:.0f}, after timed rounds {rss_after_rounds:.0f})"
    )
    print(f"  starvation: interactive run submitted with {starve['cells_started_at_submit']} cells started")
    print(f"    submit → RunStarted:        {1000 * starve['start_s']:.1f} ms")
    print(f"    submit → first model call:  {1000 * starve['first_call_s']:.1f} ms")
    print(
        f"    submit → finished:          {1000 * starve['finish_s']:.1f} ms   "
        f"(2 model calls at {1000 * LATENCY_S:.0f} ms server latency each)"
    )
    print(
        f"    a fan-out cell, for scale:  {1000 * starve['cell_p50_s']:.1f} ms p50, "
        f"{1000 * starve['cell_p90_s']:.1f} ms p90 run time (RunStarted → finished, same round)"
    )
    print(f"    that round's wall time:     {starve['round_wall_s']:.2f} s")
    print("=" * 72)


if __name__ == "__main__":
    asyncio.run(main())
