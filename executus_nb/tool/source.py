"""``ToolSource``: an object that supplies tools it only knows once started (an MCP server).

A source stands in ``Agent(tools=[...])`` or ``Executor(tools=[...])`` beside plain tools.
Its tools are listed when a run prepares (on the run's loop, before ``RunStarted``), so a
source that is slow or broken to start costs nothing until a run needs it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from executus_nb.tool.decorator import Tool


@runtime_checkable
class ToolSource(Protocol):
    """Supplies tools: listed (started if need be) by ``alist_tools``, stopped by ``close``."""

    name: str | None

    async def alist_tools(self) -> list[Tool]:
        """The source's tools now (it starts on first use; raises ``ConfigError`` when it cannot)."""
        ...

    def close(self, timeout: float = ...) -> None:
        """Stop the source (it may start again on its next use)."""
        ...


def is_tool_source(obj: Any) -> bool:
    """True for a tool source (not a tool, a function or a name)."""
    return not isinstance(obj, (Tool, str)) and isinstance(obj, ToolSource)
