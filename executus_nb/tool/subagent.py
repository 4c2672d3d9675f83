"""An agent as a tool: one ``input`` string, answered by a sub-run of the calling run.

The tool reaches the executor through the run's context (``RunContext.spawn``, set by the
executor), so this layer never imports the run layer.  The sub-run's own bounds (steps,
runtime, the parent's budget) bound the call, so the tool itself has no timeout.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from executus_nb.errors import ToolError
from executus_nb.tool.decorator import Tool
from executus_nb.types.context import RunContext


def tool_name(agent_name: str) -> str:
    """A model-safe tool name from an agent's name (letters, digits, ``_`` and ``-``; 64 characters)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", agent_name).strip("_") or "agent"
    return ("_" + name if name[0].isdigit() or name[0] == "-" else name)[:64]


def answer_text(output: Any) -> str:
    """A sub-run's output as the text the calling model reads: str as is, structured output as JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    import json

    return json.dumps(output, ensure_ascii=False, default=str)


def agent_tool(agent: Any, name: str | None = None, description: str | None = None) -> Tool:
    """The ``Tool`` that runs ``agent`` on its ``input`` as a sub-run and returns its output (``Agent.as_tool``)."""

    async def call(ctx: RunContext, input: str) -> str:  # noqa: A002 — the argument the model sends is "input"
        """Ask the agent.

        Args:
            input: the task or question for the agent, as text.
        """
        if ctx is None or ctx.spawn is None:
            raise ToolError(f"agent {agent.name!r} as a tool runs only inside a run of an Executor")
        result = await ctx.spawn(agent, input)
        if not result.ok:
            error = f": {result.error}" if result.error is not None else ""
            raise ToolError(f"agent {agent.name!r} (sub-run {result.run_id}) ended {result.status.value}{error}")
        return answer_text(result.output)

    summary = f"Ask the agent {agent.name!r} and get its answer"
    if isinstance(agent.instructions, str) and agent.instructions.strip():
        summary += f" (its instructions: {agent.instructions.strip()[:200]})"
    return Tool(call, name=name or tool_name(agent.name), description=description or summary, timeout_s=None)
