"""The terminal printer on a run with 1,000 parallel tool calls: printed vs. quiet ``run.wait()``.

Target: printing costs O(steps) and runs off the event loop, so the printed run
stays within a small factor of the quiet one.  Medians over alternating rounds;
the printer writes to an in-memory stream so the terminal's speed is not measured.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from executus_nb import Agent, Executor, sim, tool  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))
CALLS = 1_000


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


MODEL = sim.scripted(
    [sim.calls(*(sim.call("noop", i=i) for i in range(CALLS))), sim.reply("done")], name="bench-printer"
)


def one(printed: bool) -> float:
    """Seconds from submitting the run to ``wait()`` returning (printing included)."""
    executor = Executor()
    agent = Agent(name="bench", tools=[noop], model=MODEL)
    out, real = io.StringIO(), sys.stdout
    sys.stdout = out
    try:
        started = time.perf_counter()
        result = executor.run(agent, "go").wait(quiet=not printed)
        elapsed = time.perf_counter() - started
    finally:
        sys.stdout = real
    assert len(result.steps) == CALLS + 2, len(result.steps)
    if printed:
        assert out.getvalue().count("\n") >= CALLS + 2, "the printer printed too little"
    return elapsed


def main() -> None:
    one(False), one(True)  # warm-up: litellm's import and first call
    quiet, printed = [], []
    for _ in range(ROUNDS):
        quiet.append(one(False))
        printed.append(one(True))
    q, p = statistics.median(quiet), statistics.median(printed)
    print(f"{CALLS:,} parallel tool calls, {ROUNDS} rounds each")
    print(f"quiet:    {q:.3f} s (median)")
    print(f"printed:  {p:.3f} s (median)")
    print(f"ratio:    {p / q:.2f}  (target ≤ 2)")


if __name__ == "__main__":
    main()
