"""``RunIdentity``: who a run is, stamped on every event of its log (no I/O)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

IDENTITY_KEYS = ("run_id", "agent", "owner", "tags", "parent_run_id")


class RunIdentity(BaseModel):
    """Who a run is: its id, its agent's name, owner, tags, and the run it was started from (if any)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    agent: str
    owner: str | None = None
    tags: tuple[str, ...] = ()
    parent_run_id: str | None = None
