"""pandas projections of event logs: steps, tool calls, usage per model and runs.

Every function takes events (one run's or many runs') and builds a fresh
DataFrame with real dtypes: timestamps ``datetime64[ns, UTC]``, durations
float seconds, tokens ``int64``, cost ``float64`` (NaN where a price is unknown).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import pandas as pd

from executus_nb.errors import UserError
from executus_nb.types.events import Compacted, Event, Reviewed
from executus_nb.types.fold import ModelCallItem, RunFold, ToolCallItem, fold, fold_runs
from executus_nb.types.handles import RunRecord
from executus_nb.types.result import steps_of
from executus_nb.types.usage import Usage

_TIME = "datetime64[ns, UTC]"
_INT = "int64"

STEP_COLUMNS: dict[str, str] = {
    "run_id": "object",
    "agent": "object",
    "owner": "object",
    "conversation_id": "object",
    "parent_run_id": "object",
    "step": _INT,
    "turn": _INT,
    "kind": "object",
    "name": "object",
    "call_id": "object",
    "started_at": _TIME,
    "finished_at": _TIME,
    "duration_s": "float64",
    "ok": "boolean",
    "prompt_tokens": _INT,
    "completion_tokens": _INT,
    "total_tokens": _INT,
    "cost_usd": "float64",
    "cached": "bool",
    "error_type": "object",
    "error_message": "object",
}
TOOL_COLUMNS: dict[str, str] = {
    "run_id": "object",
    "agent": "object",
    "owner": "object",
    "conversation_id": "object",
    "parent_run_id": "object",
    "step": _INT,
    "turn": _INT,
    "call_id": "object",
    "provider_call_id": "object",
    "tool": "object",
    "arguments": "object",
    "result": "object",
    "ok": "boolean",
    "error_type": "object",
    "error_message": "object",
    "decision": "object",
    "decided_by": "object",
    "rule": "object",
    "started_at": _TIME,
    "finished_at": _TIME,
    "duration_s": "float64",
}
USAGE_COLUMNS: dict[str, str] = {
    "model": "object",
    "requests": _INT,
    "prompt_tokens": _INT,
    "completion_tokens": _INT,
    "total_tokens": _INT,
    "cost_usd": "float64",
}
RUN_COLUMNS: dict[str, str] = {
    "run_id": "object",
    "agent": "object",
    "owner": "object",
    "conversation_id": "object",
    "parent_run_id": "object",
    "forked_at": "Int64",
    "model": "object",
    "models": "object",
    "status": "object",
    "started_at": _TIME,
    "finished_at": _TIME,
    "duration_s": "float64",
    "steps": _INT,
    "model_calls": _INT,
    "tool_calls": _INT,
    "prompt_tokens": _INT,
    "completion_tokens": _INT,
    "total_tokens": _INT,
    "cost_usd": "float64",
    "output": "object",
    "error_type": "object",
    "error_message": "object",
    "budget": "object",
    "tags": "object",
}


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    # Built as object first: text columns stay ``object`` with None for missing, whatever
    # pandas would infer (pandas 3 infers ``str`` only when a column happens to hold text).
    df = pd.DataFrame(rows, columns=list(columns), dtype=object)
    dtype: Any  # the stubs type astype() by literal dtype names; ours come from the column tables
    for name, dtype in columns.items():
        if dtype == _TIME:
            df[name] = pd.to_datetime(df[name], utc=True).astype(dtype)
        elif dtype != "object":
            df[name] = df[name].astype(dtype)
    return df


def steps_df(events: Sequence[Event]) -> pd.DataFrame:
    """One row per model call and per tool call.

    Columns: run_id, agent, owner (who ran it), conversation_id (shared by the runs of one conversation),
    parent_run_id (the run it continues, or the run that started it as a sub-run), step (1-based
    order in the run), turn (the model call it belongs to), kind (``model``/``tool``/``compaction``/``review``),
    name (model or tool; a review's: its critic), call_id,
    started_at, finished_at, duration_s, ok, prompt_tokens, completion_tokens,
    total_tokens, cost_usd (NaN if unpriced), cached, error_type, error_message.
    """
    runs = fold_runs(events)
    rows = [{**s.model_dump(include=set(STEP_COLUMNS)), "owner": _owner(run)} for run in runs for s in steps_of(run)]
    if any(run.compactions or run.reviews for run in runs):
        # A compaction is a row too, just before the call it shrank; a review just after the call it reviewed.
        order = {run.run_id: i for i, run in enumerate(runs)}
        rows += [_compaction_row(run, ev) for run in runs for ev in run.compactions]
        rows += [_review_row(run, ev) for run in runs for ev in run.reviews]
        place = {"compaction": 0, "review": 2}
        rows.sort(key=lambda r: (order[r["run_id"]], r["step"], place.get(r["kind"], 1)))
    return _frame(rows, STEP_COLUMNS)


def _compaction_row(run: RunFold, ev: Compacted) -> dict[str, Any]:
    """A ``Compacted`` event as a steps_df row of kind ``compaction``: named by its summariser, with its usage."""
    return _marker_row(run, ev, ev.step, "compaction", ev.summary_model or ev.method, 0.0, True)


def _review_row(run: RunFold, ev: Reviewed) -> dict[str, Any]:
    """A ``Reviewed`` event as a steps_df row of kind ``review``: named by its critic, ok unless the critic's
    request was rejected (no revision left) or the critic failed, with the usage of the review's own calls."""
    ok = ev.verdict != "rejected" and ev.error is None
    return _marker_row(run, ev, ev.step if ev.step is not None else 0, "review", ev.critic, ev.duration_s, ok)


def _marker_row(
    run: RunFold, ev: Compacted | Reviewed, step: int, kind: str, name: str, duration_s: float, ok: bool
) -> dict[str, Any]:
    """The steps_df row of an event that is a step of its own (a compaction, a review): its usage and error."""
    usage = ev.usage
    return {
        "run_id": run.run_id,
        "agent": run.agent,
        "owner": _owner(run),
        "conversation_id": run.conversation_id,
        "parent_run_id": run.parent_run_id,
        "step": step,
        "turn": ev.turn,
        "kind": kind,
        "name": name,
        "call_id": None,
        "started_at": ev.ts - timedelta(seconds=duration_s),
        "finished_at": ev.ts,
        "duration_s": duration_s,
        "ok": ok,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost_usd": usage.cost_usd,
        "cached": False,
        "error_type": ev.error.type if ev.error else None,
        "error_message": ev.error.message if ev.error else None,
    }


def _owner(run: RunFold) -> str | None:
    """Who ran it (``RunIdentity.owner``: the run's, its agent's or its executor's owner), or None."""
    return run.identity.owner if run.identity is not None else None


def tool_calls_df(events: Sequence[Event]) -> pd.DataFrame:
    """One row per tool call.

    Columns: run_id, agent, owner, conversation_id, parent_run_id, step, turn, call_id (unique in the run),
    provider_call_id
    (the id the provider sent, which may repeat), tool, arguments (the raw JSON the
    model sent), result (what the model was shown), ok, error_type, error_message,
    decision / decided_by / rule (the permission decision, if a policy ruled),
    started_at, finished_at, duration_s.
    """
    rows = []
    for run in fold_runs(events):
        for item, step in zip(run.steps_in_order(), steps_of(run), strict=True):
            if not isinstance(item, ToolCallItem):
                continue
            d = item.decision
            rows.append(
                {
                    **step.model_dump(include=set(TOOL_COLUMNS)),
                    "owner": _owner(run),
                    "tool": step.name,
                    "decision": d.decision if d else None,
                    "decided_by": d.by if d else None,
                    "rule": d.rule if d else None,
                }
            )
    return _frame(rows, TOOL_COLUMNS)


USAGE_KEYS: dict[str, str] = {"model": "object", "agent": "object", "owner": "object", "day": _TIME}


def usage_df(events: Iterable[Event], by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Usage per model that served calls (or per ``by``: any of ``"model"``, ``"agent"``, ``"owner"``, ``"day"``).

    Columns: the ``by`` keys (``day`` is the UTC midnight the call finished on), requests, prompt_tokens,
    completion_tokens, total_tokens, cost_usd (NaN for a model with no known price, never a silent 0).
    """
    keys = [by] if isinstance(by, str) else list(by)
    if not keys or any(key not in USAGE_KEYS for key in keys) or len(set(keys)) != len(keys):
        raise UserError(f"usage_df(by=...) takes one or more of {list(USAGE_KEYS)}, got {by!r}")
    numbers = {k: v for k, v in USAGE_COLUMNS.items() if k != "model"}
    runs = fold_runs(events)  # once: folding is most of the cost (events may also be a one-pass iterable)
    rows = [
        {
            "model": item.model,
            "agent": run.agent,
            "owner": _owner(run),
            "day": item.finished_at or item.started_at,
            **item.usage.model_dump(include=set(numbers)),
        }
        for run in runs
        for item in run.timeline
        if isinstance(item, ModelCallItem) and item.ok
    ]
    rows += [  # a summarising call's usage, attributed to its model like any other call's
        {
            "model": ev.summary_model,
            "agent": run.agent,
            "owner": _owner(run),
            "day": ev.ts,
            **ev.usage.model_dump(include=set(numbers)),
        }
        for run in runs
        for ev in run.compactions
        if ev.summary_model and ev.usage.requests
    ]
    columns = {**{key: USAGE_KEYS[key] for key in keys}, **numbers}
    df = _frame(rows, {**columns, **{k: v for k, v in USAGE_KEYS.items() if k not in keys}})
    if df.empty:
        return df[list(columns)]
    if "day" in keys:
        df["day"] = df["day"].dt.floor("D")
    grouped = df.groupby(keys, sort=True, dropna=False)  # a run with no owner is a group too
    out = grouped[["requests", "prompt_tokens", "completion_tokens", "total_tokens"]].sum()
    out["cost_usd"] = grouped["cost_usd"].apply(lambda s: s.sum(skipna=False))  # NaN stays NaN
    return out.reset_index().astype(columns)


def _conversation(run: RunRecord, state: RunFold) -> str:
    """The run's conversation; a run still queued (no events yet) reads it from its log's identity."""
    if state.identity is not None:
        return state.conversation_id
    identity = getattr(run.log, "identity", None)
    return str(getattr(identity, "conversation_id", None) or run.run_id)


def _origin(run: RunRecord, state: RunFold) -> tuple[str | None, int | None]:
    """The run it continues or was forked from and the step of it a fork starts after (from its identity)."""
    identity = state.identity if state.identity is not None else getattr(run.log, "identity", None)
    return getattr(identity, "parent_run_id", None), getattr(identity, "forked_at", None)


def runs_df(runs: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run (a ``Run``, or anything shaped like one: a ``RunRecord``, such as a run read back from a store).

    Columns: run_id, agent, owner (who ran it: ``run(owner=)``, else the agent's, else the executor's),
    conversation_id, parent_run_id (the run it continues or was forked from),
    forked_at (a fork's: the step of its parent it starts after, 0 = the prompt; NA if no fork), model
    (the model that produced the final answer; for a run without one, the last model tried), models
    (every model tried, in order), status,
    started_at, finished_at, duration_s, steps, model_calls, tool_calls, prompt_tokens,
    completion_tokens, total_tokens, cost_usd, output, error_type, error_message,
    budget (which budget ended the run, ``"max_usd (executor)"``; None if none did),
    tags (the agent's and the run's, e.g. ``schedule:<name>`` on a scheduled run's).
    A run's tokens and cost include its sub-runs' (``agent.as_tool()``), which have rows of their own too.
    """
    rows = []
    for run in runs:
        state = fold(run.log.events, model=run.model)
        items = state.steps_in_order()
        model_items = [i for i in items if isinstance(i, ModelCallItem)]
        summarised = sum((c.usage for c in state.compactions), Usage())  # the summaries' own calls
        summarised += sum((s.usage for s in state.subruns), Usage())  # its sub-runs' (agents used as tools)
        started = state.started_at if state.prompt is not None else None
        parent, forked_at = _origin(run, state)
        rows.append(
            {
                "run_id": run.run_id,
                "agent": run.agent.name,
                "owner": getattr(state.identity or getattr(run.log, "identity", None), "owner", None),
                "conversation_id": _conversation(run, state),
                "parent_run_id": parent,
                "forked_at": forked_at,
                "model": state.model,
                "models": state.models_tried,
                "status": run.status.value,
                "started_at": started,
                "finished_at": state.finished_at,
                "duration_s": state.elapsed_s() if started and state.finished else float("nan"),
                "steps": len(items),
                "model_calls": len(model_items),
                "tool_calls": len(items) - len(model_items),
                "prompt_tokens": sum(i.usage.prompt_tokens for i in model_items) + summarised.prompt_tokens,
                "completion_tokens": sum(i.usage.completion_tokens for i in model_items) + summarised.completion_tokens,
                "total_tokens": sum(i.usage.total_tokens for i in model_items) + summarised.total_tokens,
                "cost_usd": state.usage.cost_usd,
                "output": state.output,
                "error_type": state.error.type if state.error else None,
                "error_message": state.error.message if state.error else None,
                "budget": state.budget,
                "tags": list(getattr(state.identity or getattr(run.log, "identity", None), "tags", ())),
            }
        )
    return _frame(rows, RUN_COLUMNS)
