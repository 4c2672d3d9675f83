"""Import time of executus_nb, and harness overhead per model call over a bare litellm loop.

Both loops make the same calls, one at a time, to the same loopback server
(in a child process); rounds alternate and medians are reported.
Targets: import ≤ 0.3 s; overhead ≤ 1 ms per model call.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
sys.path.insert(0, os.path.dirname(__file__))

from _server import ServerProcess  # noqa: E402

CALLS = 200
ROUNDS = 5
IMPORTS = 7


def import_time(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(IMPORTS)]
    return statistics.median(runs)


async def bare(lm, base_url: str, messages: list) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        r = await lm.acompletion(
            model="openai/test-model",
            api_base=base_url,
            api_key="sk-bench",
            messages=messages,
            max_retries=0,
            timeout=30,
        )
        assert r.choices[0].message.content
    return time.perf_counter() - started


async def harness(executor, agent, prompt: str) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        result = await executor.arun(agent, prompt)
        assert result.ok, result
    return time.perf_counter() - started


async def main() -> None:
    from executus_nb import Agent, Executor
    from executus_nb.model.backend import litellm

    lm = litellm()
    prompt = "Say ok."
    with ServerProcess() as base_url:
        agent = Agent(
            name="bench",
            instructions="Be brief.",
            model={"model": "openai/test-model", "api_base": base_url, "api_key": "sk-bench"},
        )
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
        executor = Executor()
        await bare(lm, base_url, messages)  # warm both paths
        await harness(executor, agent, prompt)
        bare_s, ours_s = [], []
        for _ in range(ROUNDS):
            bare_s.append(await bare(lm, base_url, messages))
            executor.runs.clear()
            ours_s.append(await harness(executor, agent, prompt))
    b, h = statistics.median(bare_s), statistics.median(ours_s)
    print(f"model calls per round: {CALLS}, rounds: {ROUNDS}")
    print(f"bare litellm.acompletion: {1000 * b / CALLS:.2f} ms/call (median round)")
    print(f"executus_nb run (1 call):  {1000 * h / CALLS:.2f} ms/call (median round)")
    print(f"overhead per model call:  {1000 * (h - b) / CALLS:.3f} ms  (ratio {h / b:.3f})")


if __name__ == "__main__":
    t_pkg = import_time("executus_nb")
    print(f"import executus_nb: {t_pkg:.3f} s (median of {IMPORTS}; target ≤ 0.3 s)")
    asyncio.run(main())
