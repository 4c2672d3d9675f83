"""Agent catalogues: a folder of agent files (TOML or YAML) read into agents by name (``load_agents``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executus_nb.agent import Agent
from executus_nb.agent_file import SUFFIXES
from executus_nb.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

CATALOGUE_COLUMNS = ["name", "file", "model", "tier", "tools", "skills", "max_steps", "budget", "description"]


class AgentCatalogue(Mapping[str, Agent]):
    """Agents by name, read-only, each with the file it came from (``files``); ``load_agents`` builds one."""

    def __init__(self, agents: Mapping[Path, Agent] | None = None, source: str | os.PathLike[str] | None = None):
        self.source = Path(source) if source is not None else None
        self._agents: dict[str, Agent] = {}
        self.files: dict[str, Path] = {}
        for file, agent in (agents or {}).items():
            if agent.name in self._agents:
                raise ConfigError(
                    f"two agents are named {agent.name!r}: {self.files[agent.name]} and {file}; rename one"
                )
            self._agents[agent.name] = agent
            self.files[agent.name] = Path(file)

    def __getitem__(self, name: str) -> Agent:
        return self._agents[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def catalogue_df(self) -> pd.DataFrame:
        """One row per agent: name, file, model, tier, tools, skills, max_steps, budget (its limits) and
        description (the first line of its instructions)."""
        import pandas as pd

        rows = [_row(agent, self.files[name]) for name, agent in self._agents.items()]
        return pd.DataFrame(rows, columns=CATALOGUE_COLUMNS, dtype=object)

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source is not None else ""
        lines = [f"AgentCatalogue({len(self)} agent{'s' if len(self) != 1 else ''}{where})"]
        width = max((len(n) for n in self._agents), default=0)
        for name, agent in self._agents.items():
            lines.append(f"  {name:<{width}}  {_description(agent) or self.files[name].name}")
        return "\n".join(lines)


def _description(agent: Agent) -> str:
    text = agent.instructions if isinstance(agent.instructions, str) else ""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= 70 else first[:69] + "…"


def _row(agent: Agent, file: Path) -> dict[str, Any]:
    return {
        "name": agent.name,
        "file": str(file),
        "model": agent.model.name if agent.model is not None else None,
        "tier": agent.tier,
        "tools": [t if isinstance(t, str) else getattr(t, "name", repr(t)) for t in agent.tools],
        "skills": list(agent.skills),
        "max_steps": agent.max_steps,
        "budget": agent.budget.limits if agent.budget is not None else None,
        "description": _description(agent),
    }


def load_agents(folder: str | os.PathLike[str]) -> AgentCatalogue:
    """Every ``*.toml``, ``*.yaml`` and ``*.yml`` file of ``folder`` (not its sub-folders), in name order, read by
    ``Agent.from_file``.  The first bad file is a ``ConfigError`` naming it; so are two agents with one name."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such agents folder (a folder of .toml or .yaml agent files)")
    files = sorted(p for p in root.iterdir() if p.suffix in SUFFIXES and p.is_file())
    return AgentCatalogue({file: Agent.from_file(file) for file in files}, root)
