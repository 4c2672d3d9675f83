"""The event log: typed, append-only records of everything a run does.

Every view (``RunResult``, DataFrames, widgets, stores) is a projection of
these events, through one fold (``types/fold.py``).  Each event carries the
run's identity (a ``RunIdentity``: run id, agent, owner, tags, parent run;
``ev.run_id``, ``ev.agent``… read it) so any table built from them can be
grouped by it.  The log holds enough to rebuild the conversation: the initial
messages, every assistant message and every tool result.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from executus_nb.types.identity import IDENTITY_KEYS, RunIdentity
from executus_nb.types.status import RunStatus
from executus_nb.types.usage import Usage


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class ErrorInfo(BaseModel):
    """What went wrong, as shown to users: a type name and a message (secrets redacted)."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    provider: str | None = None
    status_code: int | None = None

    @field_validator("message")
    @classmethod
    def _type_once(cls, message: str, info: ValidationInfo) -> str:
        """The type is a field of its own: the message never repeats it ("X: X: …" reads as two errors)."""
        kind = info.data.get("type")
        while kind and message.startswith(f"{kind}:"):
            message = message[len(kind) + 1 :].lstrip()
        return message

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


class _EventBase(BaseModel):
    """What every event holds: the run's ``identity``, its place in the log (``seq``) and its time."""

    model_config = ConfigDict(frozen=True)

    identity: RunIdentity
    seq: int = 0
    ts: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _flat_identity(cls, data: Any) -> Any:
        """Accept the identity as flat keys (``run_id=``, ``agent=``…), as logs of earlier versions hold it."""
        if isinstance(data, dict) and "identity" not in data and "run_id" in data:
            data = dict(data)
            data["identity"] = {key: data.pop(key) for key in IDENTITY_KEYS if key in data}
        return data

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    @property
    def agent(self) -> str:
        return self.identity.agent

    @property
    def owner(self) -> str | None:
        return self.identity.owner

    @property
    def tags(self) -> tuple[str, ...]:
        return self.identity.tags


class RunStarted(_EventBase):
    """A run began; holds the initial conversation so a run can be rebuilt."""

    kind: Literal["run_started"] = "run_started"
    prompt: str
    model: str
    messages: list[dict[str, Any]]
    tools: list[str] = []
    max_steps: int
    max_runtime_s: float | None = None
    budget_left: dict[str, float] = {}  # the tightest budget left per limit (max_usd…) as the run starts


class ModelCallStarted(_EventBase):
    """A model call is about to be sent (``turn`` counts model calls from 1)."""

    kind: Literal["model_call_started"] = "model_call_started"
    step: int
    turn: int
    model: str


class ModelCallFinished(_EventBase):
    """A model call returned an assistant message, or failed with ``error``."""

    kind: Literal["model_call_finished"] = "model_call_finished"
    step: int
    turn: int
    model: str
    message: dict[str, Any] | None = None
    usage: Usage = Usage()
    latency_s: float = 0.0
    finish_reason: str | None = None
    cached: bool = False
    error: ErrorInfo | None = None


class Failover(_EventBase):
    """A model call failed with a retryable error; the call moves to the next model of the tier."""

    kind: Literal["failover"] = "failover"
    step: int
    turn: int
    from_model: str
    to_model: str
    error: ErrorInfo


class OutputRejected(_EventBase):
    """A final answer failed validation against the output type; ``feedback`` went back to the model."""

    kind: Literal["output_rejected"] = "output_rejected"
    turn: int
    raw: str
    errors: str
    feedback: str


class ToolCallStarted(_EventBase):
    """The model asked for a tool; ``arguments`` is the raw JSON text it sent."""

    kind: Literal["tool_call_started"] = "tool_call_started"
    step: int
    turn: int
    call_id: str  # unique within the run; approvals, joins and the tool message key on it
    name: str
    arguments: str
    provider_call_id: str | None = None  # the id the provider sent (may repeat across turns or calls)


class ToolCallFinished(_EventBase):
    """A tool call ended; ``result`` is exactly what the model is shown."""

    kind: Literal["tool_call_finished"] = "tool_call_finished"
    step: int
    turn: int
    call_id: str
    name: str
    result: str
    error: ErrorInfo | None = None
    duration_s: float = 0.0
    truncated: bool = False


class ApprovalRequested(_EventBase):
    """A tool call waits for a human (or ``on_ask``) decision."""

    kind: Literal["approval_requested"] = "approval_requested"
    step: int
    call_id: str
    name: str
    arguments: str
    rule: str | None = None


class ApprovalResolved(_EventBase):
    """The decision on a tool call: ``allow`` or ``deny``, by whom."""

    kind: Literal["approval_resolved"] = "approval_resolved"
    step: int
    call_id: str
    name: str
    decision: Literal["allow", "deny"]
    rule: str | None = None
    by: str = "policy"


class MessagesRewritten(_EventBase):
    """A ``before_model_call`` hook changed the conversation: ``messages`` is what was sent from then on."""

    kind: Literal["messages_rewritten"] = "messages_rewritten"
    step: int
    turn: int
    messages: list[dict[str, Any]]


class RevisionRequested(_EventBase):
    """An ``on_final`` hook sent the final output back to the model with ``feedback``: another round."""

    kind: Literal["revision_requested"] = "revision_requested"
    turn: int
    output: Any = None
    feedback: str


class Reviewed(_EventBase):
    """A critic reviewed the final output of turn ``turn`` (model call ``step``); ``round`` counts reviews from 1.

    ``verdict``: ``accepted``; ``revise`` (``feedback`` went back to the model: another round); ``rejected``
    (the critic asked for a change but no revision was left, so the run ends with this output) or ``failed``
    (the critic raised ``error``; the output is accepted as it is).  ``usage`` is what the review's own
    model calls spent (a ``ModelCritic``'s sub-run, already counted in the run's usage through its
    ``SubRunFinished``, so not added again); zero for a plain function.
    """

    kind: Literal["review"] = "review"
    step: int | None = None
    turn: int
    round: int
    critic: str
    verdict: Literal["accepted", "revise", "rejected", "failed"]
    feedback: str | None = None
    usage: Usage = Usage()
    duration_s: float = 0.0
    error: ErrorInfo | None = None


class BudgetStopped(_EventBase):
    """A budget ended the run: which limit (``max_usd``…), of which scope, the limit and what was spent.

    ``refused`` is True when the run was refused before any model call (status ``budget_refused``);
    ``step`` is the step the stop came before (None when refused).
    """

    kind: Literal["budget_stopped"] = "budget_stopped"
    step: int | None = None
    budget: Literal["max_steps", "max_tokens", "max_usd", "max_runtime_s"]
    scope: Literal["run", "agent", "executor"]
    limit: float
    spent: float
    refused: bool = False


class Compacted(_EventBase):
    """Older turns were compacted before model call ``step``: ``tokens_before`` → ``tokens_after`` (litellm's count).

    ``method`` is ``summary`` (replaced by ``summary``, written by ``summary_model`` for ``usage``), ``dropped``
    (the oldest turns dropped behind a marker: the summary failed, ``error``, or was too long) or ``custom``.
    """

    kind: Literal["compacted"] = "compacted"
    step: int
    turn: int
    model: str  # the model the compacted request went to
    method: Literal["summary", "dropped", "custom"]
    tokens_before: int
    tokens_after: int
    limit: int | None = None  # context_tokens × compaction_ratio: the count compaction aims under
    window: int | None = None
    messages_compacted: int = 0
    summary: str | None = None
    summary_model: str | None = None
    usage: Usage = Usage()  # the summarising call's, counted in the run's usage like any model call's
    error: ErrorInfo | None = None


class SubRunFinished(_EventBase):
    """A sub-run of this run ended: an agent used as a tool (``agent.as_tool()``, in tool step ``step``,
    call ``call_id``) or a phase of a pipeline (``step``: the phase's number).

    ``usage`` is the sub-run's, counted in this run's usage (and its budget); ``events`` is the sub-run's
    log as it ended (already redacted), so this log alone shows its timeline nested in the step.
    """

    kind: Literal["subrun_finished"] = "subrun_finished"
    step: int | None = None
    call_id: str | None = None
    sub_run_id: str
    sub_agent: str
    status: RunStatus
    usage: Usage = Usage()
    error: ErrorInfo | None = None
    events: list[dict[str, Any]] = []


class RunFinished(_EventBase):
    """The run reached a final status; ``output`` is set only on success."""

    kind: Literal["run_finished"] = "run_finished"
    status: RunStatus
    output: Any = None
    error: ErrorInfo | None = None
    usage: Usage = Usage()
    steps: int = 0


class Delivered(_EventBase):
    """A finished run's result went to a delivery ``target`` (``Executor(delivery=...)``), recorded after
    ``RunFinished`` by the ``after_run`` point: ``ok``, or the ``error`` it raised (the run's own status stays
    as it ended); ``location`` is where it went (the file written), if it says."""

    kind: Literal["delivered"] = "delivered"
    target: str
    ok: bool = True
    error: ErrorInfo | None = None
    location: str | None = None


class StoreFailed(_EventBase):
    """The executor's store could not write this run's events (``error``); ``pending`` events wait and are
    retried, so nothing is lost once it can write again (a ``StoreWarning`` says so too)."""

    kind: Literal["store_failed"] = "store_failed"
    error: ErrorInfo
    pending: int = 0
    store: str = ""


Event = Annotated[
    RunStarted
    | ModelCallStarted
    | ModelCallFinished
    | Failover
    | OutputRejected
    | ToolCallStarted
    | ToolCallFinished
    | ApprovalRequested
    | ApprovalResolved
    | MessagesRewritten
    | RevisionRequested
    | Reviewed
    | BudgetStopped
    | Compacted
    | SubRunFinished
    | StoreFailed
    | RunFinished
    | Delivered,
    Field(discriminator="kind"),
]

AFTER_RUN_EVENTS: tuple[type[_EventBase], ...] = (Delivered,)
"""What ``after_run`` hooks record once ``RunFinished`` has ended a run: the run has still ended."""


def run_ended(events: Sequence[Any]) -> bool:
    """Whether a run's log has ended: its last event, past those recorded after the end, is ``RunFinished``."""
    for event in reversed(events):
        if not isinstance(event, AFTER_RUN_EVENTS):
            return isinstance(event, RunFinished)
    return False
