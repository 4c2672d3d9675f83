"""Skills: instructions and tool names kept in a folder's ``SKILL.md``, added to the runs of agents that name them.

A skill is a folder holding ``SKILL.md``: YAML front matter between leading ``---`` lines (``name``,
``description``, optional ``tools: [names]``), then Markdown instructions.  ``load_skills("skills/")``
reads every such folder into a ``SkillCatalogue``; ``Executor(skills=...)`` makes it available and
``Agent(skills=["summarise"])`` adds that skill's instructions and tools to each of its runs.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executus_nb.agent import Agent
from executus_nb.errors import ConfigError
from executus_nb.types.identity import RunIdentity

if TYPE_CHECKING:
    import pandas as pd

SKILL_FILE = "SKILL.md"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_FRONT_MATTER_KEYS = ("name", "description", "tools")


@dataclass(frozen=True)
class Skill:
    """One skill: its ``name`` (letters, digits, ``-`` and ``_``), a one-line ``description``, the Markdown
    ``instructions`` a run gets, the ``tools`` it adds (registered names) and the ``path`` it was read from."""

    name: str
    description: str
    instructions: str = ""
    tools: tuple[str, ...] = ()
    path: Path | None = None

    def __post_init__(self) -> None:
        where = f"{self.path}: " if self.path is not None else f"Skill({self.name!r}): "
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"{where}name: a skill name is letters, digits, '-' and '_', not {self.name!r}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ConfigError(f"{where}description: a skill needs a description (a non-empty str)")
        if not isinstance(self.instructions, str):
            raise ConfigError(f"{where}instructions: the instructions are a str (Markdown)")
        tools = self.tools
        if isinstance(tools, str) or not all(isinstance(t, str) and t for t in tools):
            raise ConfigError(f"{where}tools: a list of registered tool names, not {tools!r}")
        object.__setattr__(self, "tools", tuple(tools))

    def section(self) -> str:
        """The part of a run's instructions this skill adds."""
        return f"## Skill: {self.name}\n{self.description}\n\n{self.instructions}".rstrip()


def read_skill(file: str | os.PathLike[str]) -> Skill:
    """The skill a ``SKILL.md`` file holds; a problem is a ``ConfigError`` naming the file and the field."""
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such skill file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the skill file: {type(exc).__name__}") from None
    meta, body = _front_matter(text, path)
    for key in meta:
        close = difflib.get_close_matches(str(key), _FRONT_MATTER_KEYS, n=1, cutoff=0.75)
        if close and close[0] != key:  # a misspelt field; other keys (license, metadata…) are others' and kept out
            raise ConfigError(f"{path}: front matter: unknown key {key!r}; did you mean {close[0]!r}?")
    for key in ("name", "description"):
        if key not in meta:
            raise ConfigError(f"{path}: front matter: {key} is missing (give name: and description:)")
        if not isinstance(meta[key], str):
            raise ConfigError(f"{path}: front matter: {key} must be a str, not {type(meta[key]).__name__}")
    tools = meta.get("tools") or []
    if not isinstance(tools, list):
        raise ConfigError(f"{path}: front matter: tools must be a list of tool names, not {type(tools).__name__}")
    return Skill(meta["name"], meta["description"].strip(), body.strip(), tuple(tools), path)


def _front_matter(text: str, path: Path) -> tuple[dict[Any, Any], str]:
    """The YAML between the leading ``---`` lines, and the Markdown after it."""
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ConfigError(f"{path}: front matter: the file must start with a '---' line, then name: and description:")
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        raise ConfigError(f"{path}: front matter: no closing '---' line after the first one")
    import yaml

    error: ConfigError | None = None
    try:
        meta = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError as exc:  # reported by position only, raised outside the handler (as agent files)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}, column {mark.column + 1}" if mark is not None else ""
        error = ConfigError(f"{path}: front matter: invalid YAML{where}: {getattr(exc, 'problem', None) or 'syntax'}")
    if error is not None:
        raise error
    if not isinstance(meta, dict):
        raise ConfigError(
            f"{path}: front matter: a table of name:, description: (and tools:), not a {type(meta).__name__}"
        )
    return meta, "".join(lines[end + 1 :])


class SkillCatalogue(Mapping[str, Skill]):
    """Skills by name, read-only (``load_skills`` builds one); two skills with one name are a ``ConfigError``."""

    def __init__(self, skills: Iterable[Skill] = (), source: str | os.PathLike[str] | None = None) -> None:
        self.source = Path(source) if source is not None else None
        self._skills: dict[str, Skill] = {}
        for skill in skills:
            if not isinstance(skill, Skill):
                raise ConfigError(f"a skill catalogue holds Skill objects, not {type(skill).__name__}")
            first = self._skills.get(skill.name)
            if first is not None:
                raise ConfigError(
                    f"two skills are named {skill.name!r}: {first.path or first} and {skill.path or skill}; rename one"
                )
            self._skills[skill.name] = skill

    def __getitem__(self, name: str) -> Skill:
        return self._skills[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._skills)

    def __len__(self) -> int:
        return len(self._skills)

    def catalogue_df(self) -> pd.DataFrame:
        """One row per skill: name, description, tools, path."""
        import pandas as pd

        rows = [
            {"name": s.name, "description": s.description, "tools": list(s.tools), "path": s.path}
            for s in self._skills.values()
        ]
        return pd.DataFrame(rows, columns=["name", "description", "tools", "path"], dtype=object)

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source is not None else ""
        lines = [f"SkillCatalogue({len(self)} skill{'s' if len(self) != 1 else ''}{where})"]
        width = max((len(n) for n in self._skills), default=0)
        for skill in self._skills.values():
            text = skill.description if len(skill.description) <= 70 else skill.description[:69] + "…"
            tools = f"  [tools: {', '.join(skill.tools)}]" if skill.tools else ""
            lines.append(f"  {skill.name:<{width}}  {text}{tools}")
        return "\n".join(lines)


def load_skills(folder: str | os.PathLike[str]) -> SkillCatalogue:
    """Every sub-folder of ``folder`` holding a ``SKILL.md``, as a catalogue keyed by the front matter's ``name``
    (the folder's name may differ).  A bad file, or two skills with one name, is a ``ConfigError`` naming it."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such skills folder (a folder of sub-folders, each holding {SKILL_FILE})")
    files = sorted(p / SKILL_FILE for p in root.iterdir() if (p / SKILL_FILE).is_file())
    return SkillCatalogue((read_skill(f) for f in files), root)


def as_catalogue(value: Any) -> SkillCatalogue | None:
    """``Executor(skills=...)``: a ``SkillCatalogue``, a folder to load, a list of ``Skill`` or a mapping of them."""
    if value is None or isinstance(value, SkillCatalogue):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_skills(value)
    if isinstance(value, Mapping):
        return SkillCatalogue(value.values())
    if isinstance(value, Iterable):
        return SkillCatalogue(value)
    raise ConfigError(
        f"skills= is a SkillCatalogue (load_skills('skills/')), a folder or a list of Skill, not {type(value).__name__}"
    )


def check_skills(agent: Agent, catalogue: Mapping[str, Skill] | None) -> list[Skill]:
    """The skills ``agent`` names, from ``catalogue``; an unknown name is a ``ConfigError`` naming it."""
    if not agent.skills:
        return []
    if catalogue is None:
        raise ConfigError(
            f"agent {agent.name!r} uses skills {list(agent.skills)}, but the executor has none: "
            "give it a catalogue, Executor(skills=load_skills('skills/'))"
        )
    unknown = [name for name in agent.skills if name not in catalogue]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(catalogue), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"agent {agent.name!r} uses unknown skill{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; known skills: {sorted(catalogue)}{hint}"
        )
    return [catalogue[name] for name in dict.fromkeys(agent.skills)]


def apply_skills(agent: Agent, skills: Sequence[Skill]) -> Agent:
    """A copy of ``agent`` with ``skills`` applied: their sections after its instructions, their tools after its
    own (names it already has are not repeated); ``skills`` of the copy is empty (they are in it now).

    Callable instructions stay callable: the copy's get the run's context and add the sections to what they return.
    """
    if not skills and not agent.skills:
        return agent
    sections = "\n\n".join(s.section() for s in skills)
    instructions: str | Callable[[Any], str] = agent.instructions
    if sections:
        instructions = _with_sections(agent.instructions, sections)
    have = {t if isinstance(t, str) else getattr(t, "name", None) or getattr(t, "__name__", None) for t in agent.tools}
    added = [name for s in skills for name in s.tools if name not in have]
    tools = [*agent.tools, *dict.fromkeys(added)]
    return agent.model_copy(update={"instructions": instructions, "tools": tools, "skills": ()})


def _with_sections(instructions: str | Callable[[Any], str], sections: str) -> str | Callable[[Any], str]:
    if not callable(instructions):
        return "\n\n".join(filter(None, [instructions, sections]))
    base = instructions

    def skilled(ctx: Any) -> Any:
        text = base(ctx)
        return "\n\n".join(filter(None, [text, sections])) if isinstance(text, str) else text  # a wrong type: as is

    skilled.__qualname__ = getattr(base, "__qualname__", "instructions")
    return skilled


def skills_for_run(agent: Agent, catalogue: Mapping[str, Skill] | None, palette: Any, identity: RunIdentity) -> Agent:
    """``agent`` as a run uses it: the skills it names (each must be in ``catalogue``) that the ``palette``
    offers (``offer_skills(identity, names)``; all, for a palette without it) applied to it."""
    skills = check_skills(agent, catalogue)
    offer = getattr(palette, "offer_skills", None)
    if skills and callable(offer):
        offered = offer(identity, [s.name for s in skills])
        if inspect.iscoroutine(offered):
            offered.close()  # never awaited: closed, so no "never awaited" warning follows
        if not isinstance(offered, (list, tuple)):
            raise ConfigError(
                f"{type(palette).__name__}.offer_skills() must return a list of skill names (not async), "
                f"got {type(offered).__name__}"
            )
        kept = set(offered)
        skills = [s for s in skills if s.name in kept]
    return apply_skills(agent, skills)
