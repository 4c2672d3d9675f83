"""``ToolRegistry``: named tools; a duplicate name is an error, never a silent overwrite."""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from executus_nb.errors import ConfigError, ToolRegistrationError
from executus_nb.tool.decorator import Tool
from executus_nb.tool.source import ToolSource, is_tool_source


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    """A ``Tool`` from a tool or a plain function."""
    return obj if isinstance(obj, Tool) else Tool(obj)


def _origin(t: Tool) -> str:
    return f"{getattr(t.fn, '__module__', '')}.{getattr(t.fn, '__qualname__', '')}"


class ToolRegistry:
    """Tools by name.  Re-registering the same function (a re-run notebook cell) replaces it.

    It also holds tool sources (``MCPServer``): an agent names one by its name for all its tools,
    or names one of their tools; those names are looked up once the sources list their tools.
    """

    def __init__(self, tools: Iterable[Tool | Callable[..., Any] | ToolSource] = ()):
        self._tools: dict[str, Tool] = {}
        self._sources: list[ToolSource] = []
        for t in tools:
            if is_tool_source(t):
                self.add_source(t)  # type: ignore[arg-type]  # narrowed by is_tool_source
            else:
                self.register(t)  # type: ignore[arg-type]

    def add_source(self, source: ToolSource) -> ToolSource:
        """Add a tool source; another source under the same name raises ``ToolRegistrationError``."""
        if source in self._sources:
            return source
        if source.name is not None and self.source(source.name) is not None:
            raise ToolRegistrationError(f"a tool source named {source.name!r} is already registered; rename one")
        self._sources.append(source)
        return source

    def source(self, name: str) -> ToolSource | None:
        """The source registered under ``name``, if any."""
        return next((s for s in self._sources if s.name == name), None)

    def sources(self) -> list[ToolSource]:
        return list(self._sources)

    def register(self, obj: Tool | Callable[..., Any], *, replace: bool = False) -> Tool:
        """Add a tool; a different tool under a taken name raises ``ToolRegistrationError``."""
        if is_tool_source(obj):
            raise ToolRegistrationError(f"{obj!r} is a tool source: add it with registry.add_source(...)")
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
    """Tools for an agent, given by object or by name (looked up in ``registries`` in order).

    Tool sources, and names left for the registries' sources to resolve, are skipped here:
    ``select_sources`` gives them, and their tools are added when the run prepares.
    """
    chosen: dict[str, Tool] = {}
    searched = any(r.sources() for r in registries)
    for item in selection:
        if is_tool_source(item):
            continue
        if isinstance(item, str):
            found = next((r.get(item) for r in registries if item in r), None)
            if found is None:
                if searched:  # a source's own name, or one of its tools: known once it lists them
                    continue
                raise ConfigError(_unknown_name(item, sorted({n for r in registries for n in r.names()})))
            t = found
        else:
            t = as_tool(item)
        if t.name in chosen and chosen[t.name] is not t:
            raise ToolRegistrationError(f"two different tools are named {t.name!r} in one agent")
        chosen[t.name] = t
    return chosen


@dataclass
class SourceSelection:
    """The tool sources an agent uses: whole ones, and names to find among the registries' sources."""

    whole: list[ToolSource] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    searched: list[ToolSource] = field(default_factory=list)  # the registries' sources, where names are found
    known: list[str] = field(default_factory=list)  # the local tool names, for an unknown name's message

    def __bool__(self) -> bool:
        return bool(self.whole or self.names)

    @property
    def used(self) -> list[ToolSource]:
        """Every source a run of this selection may start."""
        more = [s for s in self.searched if s not in self.whole] if self.names else []
        return [*self.whole, *more]

    async def add_to(self, tools: dict[str, Tool]) -> None:
        """List the sources (started at once, side by side) and add their tools to ``tools``.

        A name two different tools share is a ``ToolRegistrationError`` (give a server a ``name=``
        to prefix its tools); a name no source has is a ``ConfigError`` listing the names known.
        """
        sources = self.used
        listed = await asyncio.gather(*(s.alist_tools() for s in sources))
        found = dict(zip(map(id, sources), listed, strict=True))
        picked = [t for s in self.whole for t in found[id(s)]]
        if self.names:
            offered = {t.name: t for s in self.searched for t in found[id(s)]}
            for name in self.names:
                if name not in offered:
                    raise ConfigError(_unknown_name(name, sorted({*self.known, *offered})))
                picked.append(offered[name])
        for t in picked:
            if t.name in tools and tools[t.name] is not t:
                raise ToolRegistrationError(
                    f"two different tools are named {t.name!r} in one agent; give an MCP server a name= "
                    "to prefix its tools"
                )
            tools[t.name] = t


def select_sources(selection: Iterable[Any], *registries: ToolRegistry) -> SourceSelection:
    """The tool sources of an agent's ``tools``: sources given as objects or by name, and the names that
    only the registries' sources can resolve (the counterpart of ``resolve_tools``)."""
    chosen = SourceSelection(
        searched=[s for r in registries for s in r.sources()],
        known=sorted({n for r in registries for n in r.names()}),
    )
    for item in selection:
        if is_tool_source(item):
            source = item
        elif isinstance(item, str) and not any(item in r for r in registries):
            source = next((found for r in registries if (found := r.source(item)) is not None), None)
            if source is None:
                chosen.names.append(item)
                continue
        else:
            continue
        if source not in chosen.whole:
            chosen.whole.append(source)
    return chosen
