"""Agent files: the fields of an ``Agent`` read from a TOML or YAML file (``Agent.from_file`` builds it).

Only configuration belongs in a file: instructions, tools and skills by registered name, model or tier,
bounds and budget; code (``hooks``, ``output_type``, ``critic``) is set in Python.  An API key is never
written in a file: a string of the ``model`` table may name an environment variable,
``api_key = "${OPENAI_API_KEY}"``, read when the file is loaded.  Every problem is a ``ConfigError``
naming the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from executus_nb.errors import ConfigError, UnknownOptionError, unknown_option_message

SUFFIXES = (".toml", ".yaml", ".yml")

# The Agent fields a file may set (tests/test_agent_files.py checks each is an Agent field).
FILE_KEYS = (
    "name",
    "instructions",
    "tools",
    "skills",
    "model",
    "tier",
    "max_steps",
    "max_runtime_s",
    "temperature",
    "max_tokens",
    "stream",
    "max_tool_output_chars",
    "output_retries",
    "owner",
    "tags",
    "budget",
    "compaction",
    "context_tokens",
    "compaction_ratio",
    "compaction_tier",
    "keep_last_turns",
    "max_revisions",
)
CODE_KEYS = ("hooks", "output_type", "critic")  # Agent fields that are Python objects: not for a file

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def agent_fields(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The Agent keywords an agent file holds; ``name`` defaults to the file's stem.

    A missing file, another suffix than .toml/.yaml/.yml, malformed text, a top level that is not a
    table, or a key no file may set is a ``ConfigError`` naming the file (and the key, or the line).
    """
    file = Path(path)
    data = read_mapping(file, "agent file")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key in CODE_KEYS:
            raise ConfigError(
                f"{file}: {key} is Python code, not configuration: set it in Python, "
                f"Agent.from_file({str(file)!r}).model_copy(update={{{key!r}: ...}})"
            )
        if key not in FILE_KEYS:
            raise UnknownOptionError(f"{file}: {unknown_option_message(key, FILE_KEYS)}")
        fields[key] = value
    if "model" in fields:
        fields["model"] = _from_environment(fields["model"], file, "model")
    fields.setdefault("name", file.stem)
    return fields


def read_mapping(file: Path, what: str) -> dict[Any, Any]:
    """The table at the top of a TOML or YAML file (by suffix); an empty file is an empty table.

    A parser's error is reported by its position only, and raised outside the handler: YAML's own
    message quotes the offending line, which may hold a secret.
    """
    if file.suffix not in SUFFIXES:
        raise ConfigError(
            f"{file}: an {what} is a .toml, .yaml or .yml file, not {file.suffix or 'one without a suffix'}"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the {what}: {type(exc).__name__}") from None
    data: Any
    error: ConfigError | None = None
    if file.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            error = ConfigError(f"{file}: invalid TOML: {exc}")  # tomllib gives the line and column, never the text
    else:
        data, error = _load_yaml(text, file)
    if error is not None:
        raise error
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: an {what} holds a table of keys at the top, not a {type(data).__name__}")
    return dict(data)


def _load_yaml(text: str, file: Path) -> tuple[Any, ConfigError | None]:
    import yaml

    try:
        return yaml.safe_load(text), None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        return None, ConfigError(f"{file}: invalid YAML{where}: {problem}")


def _from_environment(value: Any, file: Path, where: str) -> Any:
    """``value`` with every ``${NAME}`` in its strings replaced by that environment variable (recursively)."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{file}: {where}: the environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, Mapping):
        return {k: _from_environment(v, file, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_from_environment(v, file, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
