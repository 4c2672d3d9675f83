"""Palettes: which of its tools (and skills) a run is offered, by name globs or by the run's owner.

Each is a ``PaletteSource`` (``Executor(palette=...)``, the ``palette`` slot of ``executus_nb.run.ports``):
``offer(ctx, tools)`` keeps the tool schemas of the next request it allows, and a tool it hides cannot
be called that turn.  ``offer_skills(identity, names)`` keeps the agent's skills it allows, asked once
as a run is prepared; a skill left out is not applied (not an error).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Protocol

from executus_nb.errors import ConfigError
from executus_nb.types.context import RunContext
from executus_nb.types.identity import RunIdentity


class SkillPalette(Protocol):
    """A palette that also chooses the skills a run is given (an optional method of a ``PaletteSource``)."""

    def offer_skills(self, identity: RunIdentity, names: Sequence[str]) -> list[str]: ...


def _globs(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    """Globs from one glob or a sequence of them (a str is one glob, never its characters)."""
    globs = (value,) if isinstance(value, str) else tuple(value)
    for glob in globs:
        if not isinstance(glob, str) or not glob:
            raise ConfigError(f"{what}: a glob is a non-empty str such as 'search_*', not {glob!r}")
    return globs


def schema_name(schema: Mapping[str, Any]) -> str | None:
    """The name of an OpenAI-style tool schema (``{"type": "function", "function": {"name": ...}}``)."""
    fn = schema.get("function")
    return fn.get("name") if isinstance(fn, Mapping) else None


class GlobPalette:
    """Offers the tools whose name matches an ``allow`` glob and no ``deny`` glob (``fnmatch``, case-sensitive);
    ``skills_allow`` and ``skills_deny`` choose the skills so.  A glob alone may be given as a str."""

    def __init__(
        self,
        allow: str | Iterable[str] = ("*",),
        deny: str | Iterable[str] = (),
        *,
        skills_allow: str | Iterable[str] = ("*",),
        skills_deny: str | Iterable[str] = (),
    ) -> None:
        self.allow = _globs(allow, "GlobPalette(allow=...)")
        self.deny = _globs(deny, "GlobPalette(deny=...)")
        self.skills_allow = _globs(skills_allow, "GlobPalette(skills_allow=...)")
        self.skills_deny = _globs(skills_deny, "GlobPalette(skills_deny=...)")

    def allows(self, name: str) -> bool:
        """True when the tool ``name`` is offered."""
        return _matches(name, self.allow, self.deny)

    def allows_skill(self, name: str) -> bool:
        """True when the skill ``name`` is offered."""
        return _matches(name, self.skills_allow, self.skills_deny)

    def offer(self, ctx: RunContext, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The schemas of the tools this palette allows, in their order."""
        return [t for t in tools if self.allows(schema_name(t) or "")]

    def offer_skills(self, identity: RunIdentity, names: Sequence[str]) -> list[str]:
        """The skills this palette allows, in their order."""
        return [n for n in names if self.allows_skill(n)]

    def _key(self) -> tuple[tuple[str, ...], ...]:
        return (self.allow, self.deny, self.skills_allow, self.skills_deny)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobPalette) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = [f"allow={list(self.allow)}"]
        if self.deny:
            parts.append(f"deny={list(self.deny)}")
        if self.skills_allow != ("*",):
            parts.append(f"skills_allow={list(self.skills_allow)}")
        if self.skills_deny:
            parts.append(f"skills_deny={list(self.skills_deny)}")
        return f"GlobPalette({', '.join(parts)})"


def _matches(name: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, g) for g in allow) and not any(fnmatchcase(name, g) for g in deny)


NOTHING = GlobPalette(allow=(), skills_allow=())  # what an owner with no rule is offered


def _palette(value: Any, what: str) -> GlobPalette:
    if isinstance(value, GlobPalette):
        return value
    if isinstance(value, str) or (isinstance(value, Iterable) and not isinstance(value, Mapping)):
        return GlobPalette(allow=_globs(value, what))
    raise ConfigError(f"{what}: give a GlobPalette or a list of allowed tool globs, not {type(value).__name__}")


class IdentityPalette:
    """A ``GlobPalette`` per run owner (``run(owner=...)``): ``rules`` maps an owner to its palette, or to a
    list of allowed tool globs.  Other owners (and runs without one) get the rule under ``"*"``, else
    ``default``; with neither they are offered no tools and no skills."""

    def __init__(
        self,
        rules: Mapping[str, GlobPalette | str | Sequence[str]],
        default: GlobPalette | str | Sequence[str] | None = None,
    ) -> None:
        if not isinstance(rules, Mapping):
            raise ConfigError(
                f"IdentityPalette(rules=...) maps an owner to a GlobPalette or allowed globs, not {type(rules).__name__}"
            )
        self.rules: dict[str, GlobPalette] = {}
        for owner, rule in rules.items():
            if not isinstance(owner, str):
                raise ConfigError(f"IdentityPalette(rules=...): an owner is a str, not {owner!r}")
            self.rules[owner] = _palette(rule, f"IdentityPalette(rules={{{owner!r}: ...}})")
        if "*" in self.rules and default is not None:
            raise ConfigError("IdentityPalette: give the other owners' rule under '*' or as default=, not both")
        other = self.rules.pop("*", None)
        if other is None:
            other = NOTHING if default is None else _palette(default, "IdentityPalette(default=...)")
        self.default = other

    def palette_for(self, owner: str | None) -> GlobPalette:
        """The palette of the runs of ``owner``."""
        return self.rules.get(owner, self.default) if owner is not None else self.default

    def offer(self, ctx: RunContext, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tools the run's owner is allowed."""
        return self.palette_for(ctx.identity.owner).offer(ctx, tools)

    def offer_skills(self, identity: RunIdentity, names: Sequence[str]) -> list[str]:
        """The skills the run's owner is allowed."""
        return self.palette_for(identity.owner).offer_skills(identity, names)

    def __repr__(self) -> str:
        rules = ", ".join(f"{owner!r}: {palette!r}" for owner, palette in self.rules.items())
        return f"IdentityPalette({{{rules}}}, default={self.default!r})"
