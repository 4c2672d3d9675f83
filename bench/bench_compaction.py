"""Compaction's cost per model call: litellm's token count of a 50-turn history, and the hook under its limit.

Every call of an agent with a known window pays one count of its request; a run with no window
known (a ``sim/`` model without ``context_tokens``) installs no hook and pays nothing.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

TURNS = 50
REPEATS = 200


def history() -> list[dict]:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Probe the vault."}]
    for i in range(TURNS):
        call = {"id": f"c{i}", "type": "function", "function": {"name": "probe", "arguments": f'{{"i": {i}}}'}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"probe {i}: " + "filler " * 40})
    return messages


def per_call_ms(fn) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    from executus_nb import Agent, Executor, sim
    from executus_nb.model.backend import litellm
    from executus_nb.model.tokens import prompt_tokens
    from executus_nb.run.compact import compaction_hook
    from executus_nb.run.log import RunLog
    from executus_nb.types.context import ModelRequest, RunContext

    litellm()
    messages = history()
    tokens = prompt_tokens("gpt-4o-mini", messages)
    print(f"history: {TURNS} turns, {len(messages)} messages, {tokens:,} tokens")
    print(
        f"litellm token_counter (gpt-4o-mini): {per_call_ms(lambda: prompt_tokens('gpt-4o-mini', messages)):.2f} ms/call"
    )
    executor = Executor()
    agent = Agent(model="gpt-4o-mini")
    log = RunLog("bench", "bench")
    hook = compaction_hook(agent, executor.resolve_tier(agent), log, executor.tiers)
    ctx = RunContext(identity=log.identity, agent=agent)

    def before_call() -> None:
        request = ModelRequest(step=1, turn=1, model="gpt-4o-mini", messages=messages, tools=[])
        assert asyncio.run(hook.before_model_call(ctx, request)) is None  # under the limit: nothing changes

    print(f"compactor before_model_call under its limit: {per_call_ms(before_call):.2f} ms/call")
    plain = Agent(model=sim.echo())
    print(
        f"sim model, no context_tokens: hook installed = {compaction_hook(plain, executor.resolve_tier(plain), log, executor.tiers) is not None}"
    )


if __name__ == "__main__":
    main()
