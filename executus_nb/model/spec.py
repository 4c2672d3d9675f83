"""``ModelSpec``: a litellm model name plus call parameters, with secrets kept out of sight."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer, model_validator

from executus_nb import redaction
from executus_nb.errors import ConfigError, config_error, unknown_option_message
from executus_nb.redaction import mask_params, params_secrets, redactor


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
        """Build a spec; a bad one raises ``ConfigError`` that never shows the input (secrets).

        It is raised outside the handler, so it has no ``__context__`` (pydantic's error holds the input).
        """
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            error = config_error(exc, "model")
        raise error

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
            typo = (
                None
                if "model" in value
                else next((k for k in value if difflib.get_close_matches(str(k), ["model"], n=1, cutoff=0.6)), None)
            )
            if typo is not None:  # {"modle": "openai/x"}: the name is there, under a misspelt key
                raise ConfigError(f"a model dict needs a 'model' key: {unknown_option_message(str(typo), ['model'])}")
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    "a model dict needs a 'model' key with a litellm model name, "
                    "e.g. {'model': 'openai/gpt-4o-mini', 'api_key': ...}"
                )
            timeout_s = params.get("timeout_s")
            if timeout_s is not None and (
                isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0
            ):
                raise ConfigError(
                    f"model {name!r}: timeout_s is the seconds one attempt may take, a number > 0, not {timeout_s!r}"
                )
            return {"name": name, "params": params}
        raise ConfigError(
            f"a model is a litellm model name or a dict of litellm parameters, not {type(value).__name__}"
        )

    @property
    def provider(self) -> str:
        """The provider prefix of the model name (``openai``, ``sim``…), or ``""``."""
        return self.name.split("/", 1)[0] if "/" in self.name else ""

    @model_validator(mode="after")
    def _register_secrets(self) -> ModelSpec:
        redactor.add(*self.secrets())  # redacted by value wherever they are echoed from now on
        return self

    @field_serializer("params")
    def _hide_secrets(self, params: dict[str, Any]) -> dict[str, Any]:
        """Dumps (``model_dump``, JSON) never carry secrets: keys, secret headers, URL credentials ``***``."""
        return mask_params(params)

    def secrets(self) -> list[str]:
        """Secret values this spec carries: secret-named parameters, header values, URL credentials."""
        return params_secrets(self.params)

    def __repr__(self) -> str:
        shown = mask_params(self.params)
        return f"ModelSpec({self.name!r}, {shown})" if shown else f"ModelSpec({self.name!r})"

    __str__ = __repr__


def environment_secrets() -> list[str]:
    """Secret values of the environment (``*_API_KEY``…, URL credentials), registered for redaction."""
    found = redaction.environment_secrets()
    redactor.add(*found)
    return found


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret value in ``text``, its base64 and percent-encoded forms and their
    prefixes of 8+ characters, with ``***`` (``secrets`` join every secret already registered)."""
    redactor.add(*secrets)
    return redactor.redact(text)
