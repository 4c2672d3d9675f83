"""Client CPU per model call on the real HTTP path, before and after passing the executor's price to litellm.

One process, one loopback OpenAI-compatible server (a child process): a 20-step
tool-calling run (19 tool calls, then an answer) on an executor with its own price
for the model, repeated; rounds alternate between *before* (no price given to
litellm, so it searches its cost map each call) and *after* (``model.call``
passes the price as litellm's per-call custom pricing).  Reported per model call:
CPU of the whole process (``time.process_time``) and of the main thread
(``time.thread_time``), medians with min and max over the rounds, and the ratio.

``--reference`` adds two rows that are NOT applied in executus_nb, because
litellm has no supported switch for them: its response cost and its success
logging skipped by replacing litellm functions, to size what an upstream switch
would save.  ``--model openai/gpt-4o-mini`` measures a model litellm's map knows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = 20  # model calls per run
RUNS = 5  # runs per round
ROUNDS = 7
PRICE = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}

# A tool call until the conversation holds STEPS - 1 tool results, then an answer.
_CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.openai_server import OpenAIServer, Reply, ToolCall, ToolCalls

def responder(body):
    done = sum(1 for m in body.get("messages") or [] if m.get("role") == "tool")
    if done >= {steps} - 1:
        return Reply("done")
    return ToolCalls((ToolCall("lookup", '{{"key": "k%d"}}' % done),))

server = OpenAIServer(responder=responder).start()
print(server.base_url, flush=True)
sys.stdin.read()
server.stop()
"""


class StepServer:
    """``with StepServer() as base_url:`` — the tool-calling server in a child process."""

    def __enter__(self) -> str:
        code = _CHILD.format(root=str(ROOT), steps=STEPS)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def make_agent(base_url: str, model: str = "openai/test-model", **params: Any) -> Any:
    from executus_nb import Agent, tool

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    return Agent(
        name="bench",
        instructions="Use the tool.",
        tools=[lookup],
        max_steps=STEPS,
        model={"model": model, "api_base": base_url, "api_key": "sk-bench", **params},
    )


class Variant:
    """A named setting, switched on for its rounds only."""

    def __init__(self, name: str, patches: Callable[[], list[tuple[Any, str, Any]]] = list) -> None:
        self.name, self.patches, self.saved = name, patches, []

    def __enter__(self) -> None:
        for obj, attr, value in self.patches():
            self.saved.append((obj, attr, getattr(obj, attr)))
            setattr(obj, attr, value)

    def __exit__(self, *exc: object) -> None:
        while self.saved:
            obj, attr, value = self.saved.pop()
            setattr(obj, attr, value)


def variants(reference: bool) -> list[Variant]:
    from executus_nb.model import call

    def before() -> list[tuple[Any, str, Any]]:
        return [(call, "pricing_params", lambda model, prices: {})]

    out = [Variant("before (no price to litellm)", before), Variant("after (price to litellm)")]
    if reference:
        import litellm.utils as lu
        from litellm.litellm_core_utils import litellm_logging as ll

        def no_cost() -> list[tuple[Any, str, Any]]:
            return [*before(), (ll.Logging, "response_cost_calculator", lambda self, *a, **k: None)]

        def no_cost_no_log() -> list[tuple[Any, str, Any]]:
            return [*no_cost(), (lu, "dispatch_success_logging", lambda *a, **k: None)]

        out += [
            Variant("ref: no litellm cost [patch]", no_cost),
            Variant("ref: + no success log [patch]", no_cost_no_log),
        ]
    return out


async def one_round(executor: Any, agent: Any, variant: Variant) -> tuple[float, float]:
    """CPU ms per model call (process, main thread) over RUNS runs; litellm's queued logging included."""
    with variant:
        process, thread = time.process_time(), time.thread_time()
        for _ in range(RUNS):
            result = await executor.arun(agent, "go")
            assert result.ok and result.usage.requests == STEPS, result
        for _ in range(5):  # litellm's logging worker runs its queue when the loop is idle
            await asyncio.sleep(0.02)
        calls = RUNS * STEPS
        return (time.process_time() - process) * 1000 / calls, (time.thread_time() - thread) * 1000 / calls


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} [{min(values):.2f}–{max(values):.2f}]"


async def main(model: str, reference: bool) -> None:
    from executus_nb import Executor

    with StepServer() as base_url:
        agent = make_agent(base_url, model)
        executor = Executor(prices={model: PRICE})
        chosen = variants(reference)
        for variant in chosen:  # warm every path once
            await one_round(executor, agent, variant)
        results: dict[str, tuple[list[float], list[float]]] = {v.name: ([], []) for v in chosen}
        for _ in range(ROUNDS):
            for variant in chosen:
                process, thread = await one_round(executor, agent, variant)
                results[variant.name][0].append(process)
                results[variant.name][1].append(thread)
            executor.runs.clear()
    base = statistics.median(results[chosen[0].name][0])
    print(f"model {model}, {STEPS}-step tool-calling runs, {RUNS} runs × {ROUNDS} alternating rounds")
    print("CPU ms per model call: median [min–max]")
    print(f"{'':32s} {'process':>20s} {'main thread':>20s}  ratio")
    for variant in chosen:
        process, thread = results[variant.name]
        ratio = statistics.median(process) / base
        print(f"{variant.name:32s} {spread(process):>20s} {spread(thread):>20s}  {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="openai/test-model", help="litellm model name sent to the loopback server")
    parser.add_argument("--reference", action="store_true", help="add the unsupported (patched) reference rows")
    args = parser.parse_args()
    asyncio.run(main(args.model, args.reference))
