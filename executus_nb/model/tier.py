"""Tiers: named, ordered lists of models with shared parameters, and the failover rules.

``{"fast": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]}`` or, with
parameters, ``{"fast": {"models": [...], "temperature": 0.2, "max_tokens": 512, "timeout_s": 20}}``;
the same from a TOML/YAML file or ``EXECUTUS_TIER_<NAME>`` environment variables.
A retryable error (429, 5xx, timeout, connection) moves a call to the next
model; others (400, 401/403, context window) fail fast.  Each attempt has its own
timeout (``timeout_s`` of the model's dict, else of the tier, else 60 s): an attempt
past it is a retryable ``Timeout`` and fails over.
"""

from __future__ import annotations

import difflib
import os
import threading
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from executus_nb.errors import ConfigError, ModelCallError, config_error, unknown_option
from executus_nb.model.spec import ModelSpec

ENV_PREFIX = "EXECUTUS_TIER_"
# Status codes worth another model: timeouts, rate limits, server and connection errors.
RETRYABLE_STATUS = {408, 409, 429}
NON_RETRYABLE_TYPES = {
    "ContextWindowExceededError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ContentPolicyViolationError",
    "UnprocessableEntityError",
    "SimScriptExhausted",
}


class Tier(BaseModel):
    """An ordered list of models tried in turn, with parameters for every call of the tier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    models: list[ModelSpec] = Field(min_length=1)
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    context_window: int | None = Field(default=None, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)
    backoff_s: float = Field(default=0.1, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)  # per attempt; None: 60 s (a model's own wins)

    def __init__(self, **data: Any) -> None:
        # Built directly (Tier(...)) or from a dict: a ConfigError either way, a typo with a suggestion;
        # raised outside the handler so pydantic's error (holding the input, API keys) is not its context.
        try:
            super().__init__(**data)
            return
        except ValidationError as exc:
            error = config_error(exc, f"tier {data.get('name', '?')!r}", type(self).model_fields)
        raise error

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, (str, dict, ModelSpec)):
            value = [value]
        return [ModelSpec.model_validate(v) for v in value]

    def params(self) -> dict[str, Any]:
        """Sampling parameters the tier sets (only those given)."""
        return {
            k: v for k, v in {"temperature": self.temperature, "max_tokens": self.max_tokens}.items() if v is not None
        }


def single(spec: ModelSpec) -> Tier:
    """A one-model tier, for an agent that names its model directly."""
    return Tier(name=spec.name, models=[spec])


def is_retryable(error: ModelCallError) -> bool:
    """True when another model (or a later try) may succeed where this call failed."""
    if error.error_type in NON_RETRYABLE_TYPES:
        return False
    status = error.status_code
    return status is None or status in RETRYABLE_STATUS or status >= 500


def parse_tiers(data: Mapping[str, Any]) -> dict[str, Tier]:
    """Tiers from a mapping of name → model, list of models, ``{"models": [...], params…}`` or a ``Tier``."""
    tiers: dict[str, Tier] = {}
    for name, entry in data.items():
        if isinstance(entry, Tier):
            tiers[name] = entry
            continue
        if isinstance(entry, Mapping) and "models" not in entry and not isinstance(entry.get("model"), str):
            # Neither a tier body nor a model dict: a misspelt "models" (``{"model": [...]}``, "modles").
            typo = next((k for k in entry if difflib.get_close_matches(str(k), ["models"], n=1, cutoff=0.6)), None)
            if typo is not None and (typo == "model" or isinstance(entry[typo], (list, tuple))):
                raise unknown_option(str(typo), set(Tier.model_fields) - {"name"}, f"tier {name!r}")
        body = dict(entry) if isinstance(entry, Mapping) and "models" in entry else {"models": entry}
        tiers[name] = Tier(name=name, **body)  # a bad entry is a ConfigError that never echoes the input
    return tiers


def load_tiers(source: str | Path | Mapping[str, Any]) -> dict[str, Tier]:
    """Tiers from a mapping, a TOML/YAML file, or TOML text (a ``[tiers]`` table or top-level tiers)."""
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source) if isinstance(source, Path) or "\n" not in str(source) else None
        data = _read_tier_file(path, source)
    if not isinstance(data, Mapping):
        raise ConfigError("tiers must be a mapping of tier name to models")
    return parse_tiers(data.get("tiers", data))


def _read_tier_file(path: Path | None, source: str | Path) -> Any:
    """Parse a tier file or TOML text; a syntax error is a ``ConfigError`` naming the place only.

    YAML's own message quotes the offending line (maybe an API key), so it is left out, and
    the error is raised outside the handler so the parser's error is not its ``__context__``.
    """
    if path is not None and path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            error = ConfigError(f"tier YAML {str(path)!r} is invalid{where}: {problem}")
    else:
        text = path.read_text(encoding="utf-8") if path is not None else str(source)
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            error = ConfigError(f"tier TOML is invalid: {exc}")  # position only, never the text
    raise error


def tiers_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Tier]:
    """Tiers from ``EXECUTUS_TIER_FAST="openai/gpt-4o-mini,anthropic/claude-3-5-haiku-latest"``."""
    environ = os.environ if environ is None else environ
    found = {
        k[len(ENV_PREFIX) :].lower(): [m.strip() for m in v.split(",") if m.strip()]
        for k, v in environ.items()
        if k.startswith(ENV_PREFIX)
    }
    return parse_tiers(found)


class Cooldowns:
    """Models that failed with a retryable error recently; they are tried last until cool."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def cool(self, model: str, seconds: float) -> None:
        with self._lock:
            self._until[model] = time.monotonic() + seconds

    def is_cooling(self, model: str) -> bool:
        with self._lock:
            return self._until.get(model, 0.0) > time.monotonic()

    def order(self, tier: Tier) -> list[ModelSpec]:
        """The tier's models, ready ones first (in tier order), cooling ones after."""
        ready = [m for m in tier.models if not self.is_cooling(m.name)]
        return ready + [m for m in tier.models if m not in ready]
