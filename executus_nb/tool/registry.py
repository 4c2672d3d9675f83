"""``ToolRegistry``: named tools; a duplicate name is an error, never a silent overwrite."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from executus_nb.errors import ConfigError, ToolRegistrationError
from executus_nb.tool.decorator import Tool


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    """A ``Tool`` from a tool or a plain function."""
    return obj if isinstance(obj, Tool) else Tool(obj)


def _origin(t: Tool) -> str:
    return f"{getattr(t.fn, '__module__', '')}.{getattr(t.fn, '__qualname__', '')}"


class ToolRegistry:
    """Tools by name.  Re-registering the same function (a re-run notebook cell) replaces it."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()):
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, obj: Tool | Callable[..., Any], *, replace: bool = False) -> Tool:
        """Add a tool; a different tool under a taken name raises ``ToolRegistrationError``."""
        t = as_tool(obj)
        old = self._tools.get(t.name)
        if old is not None and not replace and _origin(old) != _origin(t):
            raise ToolRegistrationError(
                f"a tool named {t.name!r} is already registered ({_origin(old)}); rename one, or pass replace=True"
            )
        self._tools[t.name] = t
        return t

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return sorted(self._tools)


default_registry = ToolRegistry()


def _unknown_name(name: str, known: list[str]) -> str:
    """Why a tool name did not resolve, and where names come from."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else " (none registered)" if not known else ""
    end = " " if hint.endswith("?") else ". "
    return (
        f"no tool named {name!r} is registered; known: {known}{hint}{end}Tool names come from "
        "Executor(tools=[...]) (then executus_nb.tool.default_registry): register the @tool function "
        f"there, or pass the function itself instead of its name: Agent(tools=[{name}])"
    )


def resolve_tools(selection: Iterable[Tool | Callable[..., Any] | str], *registries: ToolRegistry) -> dict[str, Tool]:
    """Tools for an agent, given by object or by name (looked up in ``registries`` in order)."""
    chosen: dict[str, Tool] = {}
    for item in selection:
        if isinstance(item, str):
            found = next((r.get(item) for r in registries if item in r), None)
            if found is None:
                raise ConfigError(_unknown_name(item, sorted({n for r in registries for n in r.names()})))
            t = found
        else:
            t = as_tool(item)
        if t.name in chosen and chosen[t.name] is not t:
            raise ToolRegistrationError(f"two different tools are named {t.name!r} in one agent")
        chosen[t.name] = t
    return chosen
