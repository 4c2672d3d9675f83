"""Tools: the ``@tool`` decorator, registries, and (in submodules) the SSRF guard and common tools."""

from executus_nb.tool.decorator import Tool, tool
from executus_nb.tool.registry import ToolRegistry, default_registry
from executus_nb.tool.stuck import stuck_tool_calls

__all__ = ["Tool", "ToolRegistry", "default_registry", "stuck_tool_calls", "tool"]
