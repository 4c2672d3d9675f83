"""``RunIdentity``: who a run is, stamped on every event of its log (no I/O)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

IDENTITY_KEYS = ("run_id", "agent", "owner", "tags", "parent_run_id", "conversation_id", "forked_at")


class RunIdentity(BaseModel):
    """Who a run is: its id, its agent's name, owner, tags, the run it was started from (if any) and the
    conversation it belongs to (``conversation_id``: the first run's id, shared by every run continuing it);
    a fork (``executor.fork``) names the step of its parent it was forked after (``forked_at``, 0 = the prompt)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    agent: str
    owner: str | None = None
    tags: tuple[str, ...] = ()
    parent_run_id: str | None = None
    conversation_id: str = ""
    forked_at: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _own_conversation(cls, data: Any) -> Any:
        """A run that continues nothing starts its own conversation (as do logs written before conversations)."""
        if isinstance(data, dict) and not data.get("conversation_id") and "run_id" in data:
            data = {**data, "conversation_id": data["run_id"]}
        return data
