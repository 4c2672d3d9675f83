"""Stream memory: a streamed run of 10,000 text deltas read live with ``run.stream()``.

Target: deltas are transient, so the log holds one record per step whatever the number of chunks, and the
memory a run holds after it ends does not grow with its deltas beyond the text itself; a live reader adds
next to nothing.  Figures: the log's length, tracemalloc peak during the run read live vs. not read, and the
memory still held after it (1,000 vs 10,000 deltas).  The peak of either grows with the chunks of the one
model call in flight: litellm's stream wrapper keeps every chunk of a call (``CustomStreamWrapper.chunks``)
until the call ends, and the reply is built from them; it is freed when the call finishes.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from executus_nb import Agent, Executor, TextDelta, sim  # noqa: E402

SIZES = (1_000, 10_000)


def one(n: int, executor: Executor, *, read_live: bool = True) -> tuple[int, int, int, int]:
    """(deltas read, events in the log, peak bytes during the run, bytes still held after it) for ``n`` deltas."""
    model = sim.function(lambda messages, tools: "w " * n, name=f"bench-stream-{n}")
    agent = Agent(name="bench", model=model, stream=True)

    async def read() -> tuple[int, int]:
        run = executor.run(agent, "go")
        deltas = 0
        if not read_live:
            await run
            return deltas, len(run.events)
        async for item in run.stream():
            deltas += isinstance(item, TextDelta)
        return deltas, len(run.events)

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    deltas, events = asyncio.run(read())
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return deltas, events, peak - base, held - base


def main() -> None:
    executor = Executor()
    one(100, executor)  # warm up: litellm import, tokenizer, provider registration
    print(
        f"{'chunks':>7} {'deltas read':>12} {'events in log':>14} {'peak KiB read':>14} {'peak KiB unread':>16} {'held after KiB':>15}"
    )
    for n in SIZES:
        deltas, events, peak, held = one(n, executor)
        _, _, peak_unread, _ = one(n, executor, read_live=False)
        print(f"{n:>7} {deltas:>12} {events:>14} {peak / 1024:>14.0f} {peak_unread / 1024:>16.0f} {held / 1024:>15.0f}")


if __name__ == "__main__":
    main()
