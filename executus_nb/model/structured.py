"""Structured output: a pydantic model as the answer, by JSON-schema mode or by prompt and parse.

Where litellm says a model supports response schemas, the schema goes in
``response_format``; otherwise the instructions carry it.  Either way the text
is parsed and validated by pydantic, and a failure is told to the model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def schema_of(output_type: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of the output model."""
    return output_type.model_json_schema()


def supports_schema(model: str) -> bool:
    """True when litellm knows the model accepts a JSON schema in ``response_format``."""
    from executus_nb.model.backend import litellm

    try:
        return bool(litellm().supports_response_schema(model=model))
    except Exception:  # noqa: BLE001 — unknown models: litellm raises plain Exceptions
        return False


def response_format(output_type: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` parameter for JSON-schema mode."""
    return {
        "type": "json_schema",
        "json_schema": {"name": output_type.__name__, "schema": schema_of(output_type), "strict": False},
    }


def output_instructions(output_type: type[BaseModel]) -> str:
    """What to tell a model that has no schema mode: reply with JSON of this schema, nothing else."""
    return (
        f"Reply with only a JSON object that matches this JSON schema (no prose, no code fence):\n"
        f"{json.dumps(schema_of(output_type), separators=(',', ':'))}"
    )


def _json_text(text: str) -> str:
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text.strip()


def parse_output(output_type: type[BaseModel], text: str | None) -> tuple[BaseModel | None, str | None]:
    """Validate a model's answer: (instance, None), or (None, what is wrong in words a model can act on)."""
    try:
        return output_type.model_validate_json(_json_text(text or "")), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        return None, problems


def retry_message(problems: str) -> str:
    """The user turn that sends a validation failure back to the model."""
    return f"Your answer did not validate: {problems}. Reply again with only a JSON object that matches the schema."
