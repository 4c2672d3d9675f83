"""The systems compared, each doing one tool-calling run against the step server the way its users write it.

* ``bare litellm loop`` — ``litellm.acompletion`` in a loop, the tool run by hand (the floor for litellm users);
* ``bare openai loop`` — the same loop on the openai SDK's ``AsyncOpenAI`` (what litellm itself calls), the
  floor of any Python client;
* ``executus_nb`` — ``Executor().arun(agent, prompt)``, its fan-out ``executor.fanout(..., backend=...)``;
* ``pydantic-ai`` — its ``OpenAIChatModel`` on an ``OpenAIProvider`` whose client points at the server;
* ``openai-agents`` — ``Runner.run`` with an ``OpenAIChatCompletionsModel`` on an ``AsyncOpenAI`` at the server,
  tracing off (``set_tracing_disabled(True)``).

All send the same instructions, the same one tool (``lookup``) and never retry: ``max_retries=0`` on every
openai client and litellm call (litellm's own ``num_retries`` is unset, i.e. none, as executus_nb leaves it).
Every run returns the model calls it made, so a workload can check that the HTTP work was the same.
Peers without a fan-out of their own fan out as their users would: ``asyncio.gather`` under a ``Semaphore``.
Heavy imports happen in ``make()``, so a fresh process can time them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from step_server import FINAL

INSTRUCTIONS = "Be brief."
BARE = "bare litellm loop"
BARE_OPENAI = "bare openai loop"
EXECUTUS = "executus_nb"
PYDANTIC_AI = "pydantic-ai"
AGENTS_SDK = "openai-agents"
SYSTEMS = (BARE, BARE_OPENAI, EXECUTUS, PYDANTIC_AI, AGENTS_SDK)
ENTRY_MODULES = {
    BARE: "litellm",
    BARE_OPENAI: "openai",
    EXECUTUS: "executus_nb",
    PYDANTIC_AI: "pydantic_ai",
    AGENTS_SDK: "agents",
}
TIMEOUT_S = 120.0


def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


Run = Callable[[str, int], Awaitable[int]]  # (prompt, tool steps) -> model calls made


class System:
    """One system: ``await run(prompt, steps)`` → model calls; ``await fanout(prompts, concurrency)`` → calls."""

    name: str

    async def run(self, prompt: str, steps: int) -> int:
        raise NotImplementedError

    async def fanout(self, prompts: Sequence[str], concurrency: int) -> int:
        """Every prompt (one tool step each) under ``concurrency`` runs in flight; the model calls made."""
        gate = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> int:
            async with gate:
                return await self.run(prompt, 1)

        return sum(await asyncio.gather(*(one(p) for p in prompts)))

    def reset(self) -> None:
        """Forget finished runs (between rounds), so memory does not grow with the rounds."""

    def close(self) -> None:
        """Stop what the system started."""


async def tool_loop(create: Callable[[list[dict[str, Any]]], Awaitable[Any]], prompt: str, steps: int) -> int:
    """The hand-written agent loop of the bare systems: call, run the tool calls, until the answer; the calls."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": prompt},
    ]
    for calls in range(1, steps + 2):
        message = (await create(messages)).choices[0].message
        if not message.tool_calls:
            assert message.content == FINAL, message
            return calls
        wire = [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in message.tool_calls
        ]
        messages.append({"role": "assistant", "content": message.content, "tool_calls": wire})
        for c in message.tool_calls:
            out = lookup(**json.loads(c.function.arguments))
            messages.append({"role": "tool", "tool_call_id": c.id, "content": out})
    raise AssertionError(f"no answer after {steps + 1} calls")


def _schema() -> list[dict[str, Any]]:
    from executus_nb import tool

    return [tool(lookup).schema]  # the very schema executus_nb sends


class BareLitellm(System):
    name = BARE

    def __init__(self, model: dict[str, str]):
        import litellm

        litellm.suppress_debug_info = True
        self.lm = litellm
        self.kwargs = {**model, "max_retries": 0, "timeout": TIMEOUT_S, "tools": _schema()}

    async def run(self, prompt: str, steps: int) -> int:
        return await tool_loop(lambda messages: self.lm.acompletion(messages=messages, **self.kwargs), prompt, steps)


class BareOpenAI(System):
    name = BARE_OPENAI

    def __init__(self, model: dict[str, str]):
        self.client = openai_client(model)
        self.tools = _schema()

    async def run(self, prompt: str, steps: int) -> int:
        create = self.client.chat.completions.create
        return await tool_loop(
            lambda messages: create(model="test-model", messages=messages, tools=self.tools), prompt, steps
        )


class Executus(System):
    name = EXECUTUS

    def __init__(self, model: dict[str, str], backend: Any = "local"):
        from executus_nb import Agent, Executor, tool

        self.model = model
        self.backend = backend
        self.agent = Agent(name="bench", instructions=INSTRUCTIONS, tools=[tool(lookup)], model=model, max_steps=100)
        self.executor = Executor()
        self.last_fan: Any = None

    async def run(self, prompt: str, steps: int) -> int:
        result = await self.executor.arun(self.agent, prompt)
        assert result.ok and result.output == FINAL, result
        return result.usage.requests

    async def fanout(self, prompts: Sequence[str], concurrency: int) -> int:
        fan = self.executor.fanout(
            self.agent, list(prompts), models=[self.model], concurrency=concurrency, backend=self.backend
        )
        await fan
        counts = fan.counts()
        if counts["succeeded"] != counts["total"]:
            errors = {
                f"{r.error.type}: {r.error.message}"[:200] if r.error else str(r.status)
                for r in (run.result for run in fan.runs)
                if not r.ok
            }
            raise RuntimeError(
                f"{counts['total'] - counts['succeeded']} of {counts['total']} cells failed: {sorted(errors)}"
            )
        self.last_fan = fan
        return sum(run.result.usage.requests for run in fan.runs)

    def reset(self) -> None:
        self.executor.runs.clear()
        self.last_fan = None

    def close(self) -> None:
        self.executor.close()


def openai_client(model: dict[str, str]) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=model["api_base"], api_key=model["api_key"], max_retries=0, timeout=TIMEOUT_S)


class PydanticAI(System):
    name = PYDANTIC_AI

    def __init__(self, model: dict[str, str]):
        from pydantic_ai import Agent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider
        from pydantic_ai.usage import UsageLimits

        chat = OpenAIChatModel("test-model", provider=OpenAIProvider(openai_client=openai_client(model)))
        self.agent = Agent(chat, instructions=INSTRUCTIONS, tools=[lookup])
        self.limits = UsageLimits(request_limit=100)

    async def run(self, prompt: str, steps: int) -> int:
        result = await self.agent.run(prompt, usage_limits=self.limits)
        assert result.output == FINAL, result.output
        return result.usage.requests


class AgentsSDK(System):
    name = AGENTS_SDK

    def __init__(self, model: dict[str, str]):
        from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

        set_tracing_disabled(True)
        chat = OpenAIChatCompletionsModel(model="test-model", openai_client=openai_client(model))
        self.agent = Agent(name="bench", instructions=INSTRUCTIONS, tools=[function_tool(lookup)], model=chat)
        self.runner = Runner

    async def run(self, prompt: str, steps: int) -> int:
        result = await self.runner.run(self.agent, prompt, max_turns=100)
        assert result.final_output == FINAL, result.final_output
        return len(result.raw_responses)


def make(name: str, model: dict[str, str], **options: Any) -> System:
    """The system called ``name`` (one of ``SYSTEMS``) on the server of ``model``."""
    kinds: dict[str, Callable[..., System]] = {
        BARE: BareLitellm,
        BARE_OPENAI: BareOpenAI,
        EXECUTUS: Executus,
        PYDANTIC_AI: PydanticAI,
        AGENTS_SDK: AgentsSDK,
    }
    return kinds[name](model, **options)
