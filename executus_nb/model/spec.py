"""``ModelSpec``: a litellm model name plus call parameters, with secrets kept out of sight."""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer, model_validator

from executus_nb.errors import ConfigError, config_error

_SECRET_NAME = re.compile(r"(key|secret|token|password|credential)", re.IGNORECASE)
_MIN_SECRET_LEN = 6


class ModelSpec(BaseModel):
    """A litellm model name (``openai/gpt-4o-mini``, ``sim/…``) and its call parameters.

    Built from a name or a dict of litellm parameters (``{"model": …, "api_base": …,
    "api_key": …}``), the same form a tier entry takes.  Its repr hides secrets.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    params: dict[str, Any] = {}

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> ModelSpec:
        """Build a spec; a bad one raises ``ConfigError`` whose message never shows the input (secrets)."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise config_error(exc, "model") from None

    @model_validator(mode="before")
    @classmethod
    def _from_name_or_dict(cls, value: Any) -> Any:
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, str):
            if not value.strip():
                raise ConfigError("a model name must not be empty")
            return {"name": value}
        if isinstance(value, dict) and "name" in value and "params" in value:
            return value
        if isinstance(value, dict):
            params = dict(value)
            name = params.pop("model", None)
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    "a model dict needs a 'model' key with a litellm model name, "
                    "e.g. {'model': 'openai/gpt-4o-mini', 'api_key': ...}"
                )
            return {"name": name, "params": params}
        raise ConfigError(f"a model is a litellm model name or a dict of litellm parameters, not {type(value).__name__}")

    @property
    def provider(self) -> str:
        """The provider prefix of the model name (``openai``, ``sim``…), or ``""``."""
        return self.name.split("/", 1)[0] if "/" in self.name else ""

    @field_serializer("params")
    def _hide_secrets(self, params: dict[str, Any]) -> dict[str, Any]:
        """Dumps (``model_dump``, JSON) never carry keys: secret-named parameters become ``***``."""
        return {k: ("***" if _SECRET_NAME.search(k) and v else v) for k, v in params.items()}

    def secrets(self) -> list[str]:
        """Secret values this spec carries (parameters named like keys or tokens)."""
        return [str(v) for k, v in self.params.items() if _SECRET_NAME.search(k) and v]

    def __repr__(self) -> str:
        shown = {k: ("***" if _SECRET_NAME.search(k) else v) for k, v in self.params.items()}
        return f"ModelSpec({self.name!r}, {shown})" if shown else f"ModelSpec({self.name!r})"

    __str__ = __repr__


def environment_secrets() -> list[str]:
    """Values of environment variables whose names say they hold a secret (``*_API_KEY``…)."""
    return [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN]


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret value (and its longer prefixes) in ``text`` with ``***``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LEN and secret in text:
            text = text.replace(secret, "***")
    return text
