"""The executor's configuration, resolved in one place: code, environment variables, a config file, defaults.

Each setting is taken whole from the first place that gives it, highest first:

1. a keyword in code: ``Executor(owner="alice", max_running=4)``;
2. an environment variable: ``EXECUTUS_OWNER``, ``EXECUTUS_MODEL``, ``EXECUTUS_MAX_RUNNING``, ``EXECUTUS_STORE``,
   ``EXECUTUS_CACHE``, ``EXECUTUS_AUDIT``, ``EXECUTUS_SKILLS``, ``EXECUTUS_MAX_ATTACHMENT_BYTES`` (an empty one is
   unset), and one tier per ``EXECUTUS_TIER_<NAME>`` (its models, comma-separated);
3. the config file: ``Executor(config="executus.toml")``, else the file ``EXECUTUS_CONFIG`` names (TOML, or YAML
   for a ``.yaml``/``.yml`` suffix): its keys are the setting names, its relative paths are relative to its folder;
4. the built-in default: what ``Executor()`` has always done (the offline ``sim/`` model, no bounds, no store).

Tiers are taken per name: ``EXECUTUS_TIER_FAST`` replaces the file's ``fast`` tier and keeps its others, while
``tiers=`` in code replaces them all.  No file is looked for in the working folder: a notebook must behave the
same whichever folder its kernel was started in, so a file counts only when it is named.  The environment is
read when an executor is made, never at import.  A bad value is a ``ConfigError`` naming where it came from
(the variable, or the file and key), never the value (a model table may hold an API key).
"""

# Hand-rolled rather than pydantic-settings, which was weighed for this: it deep-merges dict values across
# sources, so a file's ``[model]`` table (with its api_key) would be merged into a model given in code or the
# environment, and one setting could have no single source to report; it validates only the merged result,
# so an error cannot name the variable or file key that gave the value; its YAML source lets the parser's
# message (which quotes the line, maybe a key) through; and ``EXECUTUS_TIER_<NAME>`` is a family of
# variables, not one field.  What remains is small: read each layer, validate it with a pydantic model (the
# library for the values' types), take each setting from the first layer that has it.

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from executus_nb.errors import ConfigError, UnknownOptionError, UserError
from executus_nb.model.spec import ModelSpec
from executus_nb.model.tier import ENV_PREFIX as TIER_ENV_PREFIX
from executus_nb.model.tier import Tier, load_tiers, parse_tiers, tiers_from_env
from executus_nb.redaction import mask_params, redact
from executus_nb.run.attach import DEFAULT_MAX_BYTES
from executus_nb.skills import load_skills
from executus_nb.types.budget import Budget

if TYPE_CHECKING:
    import pandas as pd

ENV_PREFIX = "EXECUTUS_"
CONFIG_ENV = "EXECUTUS_CONFIG"
# The settings, in the order config_df() lists them; those an environment variable may give.
KEYS = (
    "owner",
    "model",
    "tiers",
    "max_running",
    "provider_limits",
    "cache",
    "store",
    "max_attachment_bytes",
    "audit",
    "skills",
    "budget",
)
ENV_KEYS = ("owner", "model", "max_running", "store", "cache", "audit", "skills", "max_attachment_bytes")
PATH_KEYS = ("tiers", "cache", "store", "audit", "skills")  # a relative path in the file is relative to the file
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class _Declared(BaseModel):
    """What an environment variable or the config file may give each setting, as plain data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str | None = Field(default=None, min_length=1)
    model: str | dict[str, Any] | None = None  # a litellm model name, or a table of its parameters
    tiers: dict[str, Any] | str | None = None  # a table of tiers, or the path of a tier file
    max_running: int | None = Field(default=None, ge=1)
    provider_limits: dict[str, Annotated[int, Field(ge=1)]] | None = None
    cache: bool | str | None = None  # on, off, or the cache's file or folder
    store: str | None = None  # a SQLite file
    max_attachment_bytes: int | None = Field(default=None, ge=1)
    audit: str | None = None  # the audit log's file
    skills: str | None = None  # a folder of skills
    budget: dict[str, Any] | None = None  # a table of Budget limits

    @field_validator("max_running", "max_attachment_bytes", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # ``max_running = true`` is a slip, not the number 1
            raise ValueError("Input should be a whole number, not true/false")
        return value

    @field_validator("cache", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE  # EXECUTUS_CACHE=1 / off
        return value


@dataclass(frozen=True)
class Settings:
    """The executor's configuration as resolved: each setting's value, and in ``sources`` where it came from.

    ``sources`` maps a setting (a tier as ``tiers.<name>``) to ``"code"``, ``"env:EXECUTUS_…"``,
    ``"file:<path>"`` or ``"default"``; ``to_df()`` is one row per setting (``executor.config_df()``).
    """

    config: Path | None = None
    owner: str | None = None
    model: ModelSpec | None = None
    tiers: dict[str, Tier] = field(default_factory=dict)
    max_running: int | None = None
    provider_limits: Mapping[str, int] | None = None
    cache: Any = None
    store: Any = None
    max_attachment_bytes: int = DEFAULT_MAX_BYTES
    audit: Any = None
    skills: Any = None
    budget: Any = None
    sources: Mapping[str, str] = field(default_factory=dict)

    def rows(self) -> Iterator[tuple[str, Any, str]]:
        """``(key, value as shown, source)`` per setting: secrets masked, a tier per row."""
        yield "config", _shown(self.config), self.sources.get("config", "default")
        for f in fields(self):
            if f.name in ("config", "sources"):
                continue
            if f.name == "tiers" and self.tiers:
                for name, tier in self.tiers.items():
                    shown = " → ".join(redact(m.name) for m in tier.models)
                    yield f"tiers.{name}", shown, self.sources.get(f"tiers.{name}", "default")
                continue
            yield f.name, _shown(getattr(self, f.name)), self.sources.get(f.name, "default")

    def to_df(self) -> pd.DataFrame:
        """One row per setting: key, value (secrets masked), source."""
        import pandas as pd

        return pd.DataFrame(list(self.rows()), columns=["key", "value", "source"], dtype=object)

    def __repr__(self) -> str:
        given = [f"{key}={value!r}" for key, value, source in self.rows() if source != "default"]
        return f"Settings({', '.join(given)})"


def _shown(value: Any) -> Any:
    """A setting's value as config_df shows it: plain scalars as they are, anything else as text with
    secret-named parameters masked and every known secret redacted."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, ModelSpec):
        params = _masked(value.params)
        return redact(f"{value.name} {params}" if params else value.name)
    if isinstance(value, Budget):
        return redact(repr(value.limits))
    if isinstance(value, Mapping):
        return redact(repr(_masked(value)))
    return redact(str(value))


def _masked(value: Any) -> Any:
    """``value`` with the values of secret-named keys as ``***``, at every depth."""
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in mask_params(value).items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


# -- reading the layers --------------------------------------------------------------------------


def read_config_file(path: Path, source: str = "code") -> dict[str, Any]:
    """The settings of a TOML or YAML file (by suffix).  A syntax error names the file and the place only:
    YAML's own message quotes the line, which may hold a key, and is raised outside the handler for that.
    ``source`` names who asked for the file (``env:EXECUTUS_CONFIG``), for a file that cannot be read."""
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {str(path)!r}: a .toml, .yaml or .yml file, by its suffix")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        asked = f" (named by {source.removeprefix('env:')})" if source.startswith("env:") else ""
        reason = exc.strerror or type(exc).__name__
        error = ConfigError(f"config file {str(path)!r}{asked} cannot be read: {reason}")
    else:
        return _table(_parsed(text, path), path)
    raise error


def _table(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of settings ({', '.join(KEYS)})")
    return {str(k): v for k, v in data.items()}


def _parsed(text: str, path: Path) -> Any:
    """The file's text parsed; the error is raised outside the handler, so the parser's is not its context."""
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            error = ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}")  # a position, never the text
    else:
        import yaml

        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            error = ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}")
    raise error


def _validated(values: dict[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """``values`` checked against the settings' types; an error names each bad key where it came from."""
    unknown = [key for key in values if key not in KEYS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"the settings are: {', '.join(KEYS)}"
        raise UnknownOptionError(redact(f"{where(key)}: unknown setting {key!r}; {hint}"))
    try:
        declared = _Declared(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():  # each message, never its input: a model table may hold an API key
            loc = [str(part) for part in err.get("loc", ())]
            inner = ".".join(loc[1:])
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            problems.append(f"{where(loc[0]) if loc else 'settings'}{f' ({inner})' if inner else ''}: {msg}")
        error = ConfigError(redact("; ".join(problems)))
    else:
        return {key: getattr(declared, key) for key in values}
    raise error  # outside the handler: pydantic's error holds the input


def _environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment gives (an empty variable is unset), validated, by key."""
    given = {key: environ[_var(key)] for key in ENV_KEYS if environ.get(_var(key))}
    return _validated(given, lambda key: f"environment variable {_var(key)}")


def _var(key: str) -> str:
    """The environment variable of a setting: ``EXECUTUS_MAX_RUNNING``."""
    return f"{ENV_PREFIX}{key.upper()}"


def _file_key(path: Path) -> Callable[[str], str]:
    return lambda key: f"config file {str(path)!r}, key {key!r}"


def _env_tiers(environ: Mapping[str, str]) -> dict[str, tuple[Tier, str]]:
    """Each ``EXECUTUS_TIER_<NAME>`` as a tier and its variable (a bad one is an error naming the variable)."""
    found: dict[str, tuple[Tier, str]] = {}
    for var in environ:
        if not var.startswith(TIER_ENV_PREFIX):
            continue
        try:
            tiers = tiers_from_env({var: environ[var]})
        except ConfigError as exc:
            error = type(exc)(redact(f"environment variable {var}: {exc}"))
        else:
            found.update({name: (tier, var) for name, tier in tiers.items()})
            continue
        raise error
    return found


# -- resolving -----------------------------------------------------------------------------------


@dataclass
class _Layer:
    """One place settings come from: its values by key, how its source is named, and its folder for paths."""

    values: dict[str, Any]
    source: Callable[[str], str]
    where: Callable[[str], str]
    folder: Path | None = None


def resolve_settings(
    config: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None, **code: Any
) -> Settings:
    """The executor's settings: each from code (``code``, a keyword not None), else the environment
    (``environ``, default ``os.environ`` now), else the config file, else the default (see the module)."""
    environ = dict(os.environ if environ is None else environ)
    for key in code:
        if key not in KEYS:
            raise UserError(f"resolve_settings() has no setting {key!r}; the settings are: {', '.join(KEYS)}")
    given = {key: value for key, value in code.items() if value is not None}
    path, config_source = _config_path(config, environ)
    layers = [
        _Layer(given, lambda key: "code", lambda key: f"Executor({key}=...)"),
        _Layer(_environment(environ), lambda key: f"env:{_var(key)}", lambda key: f"environment variable {_var(key)}"),
    ]
    if path is not None:
        in_file = _file_key(path)
        values = _validated(read_config_file(path, config_source), in_file)
        layers.append(_Layer(values, lambda key: f"file:{path}", in_file, path.parent))
    resolved: dict[str, Any] = {}
    sources: dict[str, str] = {"config": config_source} if path is not None else {}
    for key in KEYS:
        if key == "tiers":
            continue
        layer = next((layer for layer in layers if key in layer.values), None)
        if layer is None:
            continue
        resolved[key] = _built(key, layer)
        sources[key] = layer.source(key)
    resolved["tiers"] = _tiers(layers, environ, sources)
    return Settings(config=path, **resolved, sources=sources)


def _config_path(config: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    if config is not None:
        if not isinstance(config, (str, os.PathLike)):
            raise ConfigError(f"Executor(config=...) is the path of a TOML or YAML file, not {type(config).__name__}")
        return Path(config), "code"
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]), f"env:{CONFIG_ENV}"
    return None, "default"


def _built(key: str, layer: _Layer) -> Any:
    """A setting's value as the executor takes it (a path to a store is the store...).  From the environment or
    the file, an error names where the value came from; from code, it is the executor's own error."""
    value = _in(layer, layer.values[key]) if key in PATH_KEYS else layer.values[key]
    try:
        return _build(key, value, from_code=layer.source(key) == "code")
    except ConfigError as exc:
        if layer.source(key) == "code":
            raise
        error = type(exc)(redact(f"{layer.where(key)}: {exc}"))
    raise error  # outside the handler: the first error may hold the input


def _build(key: str, value: Any, *, from_code: bool) -> Any:
    """A setting's value as the executor's keyword takes it: a path to a store becomes the store, and so on.
    A value from code is otherwise left to the executor, which checks it as it always has."""
    if key == "owner" and (not isinstance(value, str) or not value.strip()):
        kind = "an empty str" if isinstance(value, str) else type(value).__name__
        raise ConfigError(f"owner is who runs: a name (a non-empty str), not {kind}")
    if key == "model":
        return ModelSpec.model_validate(value)
    if key == "store" and isinstance(value, (str, os.PathLike)):
        from executus_nb.store.sqlite import SQLiteStore

        return SQLiteStore(value)
    if key == "audit" and isinstance(value, (str, os.PathLike)):
        from executus_nb.sinks.audit import AuditLog

        return AuditLog(value)
    if from_code:
        return value
    if key == "skills":
        return load_skills(value)  # loaded here, so a bad folder is an error naming where it was set
    if key == "budget":
        return Budget(**value)
    return value


def _in(layer: _Layer, value: Any) -> Any:
    """A path from the file, relative to the file's folder (an absolute path stays as it is; a trailing
    separator, which asks for a folder, is kept)."""
    if layer.folder is None or not isinstance(value, str) or not value:
        return value
    return os.path.join(layer.folder, value)


def _tiers(layers: list[_Layer], environ: Mapping[str, str], sources: dict[str, str]) -> dict[str, Tier]:
    """The tiers, per name: code's replace all; else the file's, each replaced by its ``EXECUTUS_TIER_<NAME>``."""
    code, file = layers[0], layers[2] if len(layers) > 2 else None
    if "tiers" in code.values:
        given = load_tiers(code.values["tiers"])
        sources.update({f"tiers.{name}": "code" for name in given} or {"tiers": "code"})
        return given
    tiers: dict[str, Tier] = {}
    if file is not None and "tiers" in file.values:
        value = file.values["tiers"]
        try:
            tiers = parse_tiers(value) if isinstance(value, dict) else load_tiers(Path(_in(file, value)))
        except ConfigError as exc:
            error: ConfigError | None = type(exc)(redact(f"{file.where('tiers')}: {exc}"))
        else:
            error = None
        if error is not None:
            raise error  # outside the handler: the first error may hold the input
        sources.update({f"tiers.{name}": file.source("tiers") for name in tiers})
    for name, (tier, var) in _env_tiers(environ).items():
        tiers[name] = tier
        sources[f"tiers.{name}"] = f"env:{var}"
    return tiers
