"""A 300-step sim/ run headless vs. the same run with its live RunView (widget messages recorded).

Target: the view costs at most 10% more wall time.  Medians over alternating rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import comm  # noqa: E402
from comm.base_comm import BaseComm  # noqa: E402

from executus_nb import Agent, Executor, sim, tool  # noqa: E402

ROUNDS = 7
TOOLS = 150  # 150 tool calls + 151 model calls = 301 steps


class CountingComm(BaseComm):
    sent = 0

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        CountingComm.sent += 1


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


def script(messages, tools):
    done = sum(1 for m in messages if m["role"] == "assistant")
    return sim.call("noop", i=done) if done < TOOLS else sim.reply("done")


async def one(with_view: bool) -> float:
    agent = Agent(name="bench", tools=[noop], model=sim.function(script), max_steps=TOOLS + 5)
    started = time.perf_counter()
    run = Executor().run(agent, "go")
    if with_view:
        run.view()
    result = await run
    assert len(result.steps) == 2 * TOOLS + 1, len(result.steps)
    return time.perf_counter() - started


async def main() -> None:
    comm.create_comm = lambda *a, **kw: CountingComm(*a, **kw)
    await one(False)
    await one(True)
    headless, viewed = [], []
    CountingComm.sent = 0
    for _ in range(ROUNDS):
        headless.append(await one(False))
        viewed.append(await one(True))
    h, v = statistics.median(headless), statistics.median(viewed)
    print(f"300-step sim run, {ROUNDS} rounds each")
    print(f"headless:       {h:.3f} s (median)")
    print(f"with RunView:   {v:.3f} s (median)")
    print(f"ratio:          {v / h:.3f}  (target ≤ 1.10)")
    print(f"widget messages per viewed run: {CountingComm.sent / ROUNDS:.0f} (for {2 * TOOLS + 1} steps)")


if __name__ == "__main__":
    asyncio.run(main())
