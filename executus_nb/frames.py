"""pandas projections of event logs: steps, tool calls, usage per model and runs.

Every function takes events (one run's or many runs') and builds a fresh
DataFrame with real dtypes: timestamps ``datetime64[ns, UTC]``, durations
float seconds, tokens ``int64``, cost ``float64`` (NaN where a price is unknown).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from executus_nb.types.events import ApprovalResolved, ModelCallFinished, RunFinished, RunStarted
from executus_nb.types.result import answering_model, build_steps, models_tried

if TYPE_CHECKING:
    from executus_nb.run.handle import Run

_TIME = "datetime64[ns, UTC]"
_INT = "int64"

STEP_COLUMNS: dict[str, str] = {
    "run_id": "object", "agent": "object", "step": _INT, "turn": _INT, "kind": "object", "name": "object",
    "call_id": "object", "started_at": _TIME, "finished_at": _TIME, "duration_s": "float64", "ok": "boolean",
    "prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT, "cost_usd": "float64",
    "cached": "bool", "error_type": "object", "error_message": "object",
}
TOOL_COLUMNS: dict[str, str] = {
    "run_id": "object", "agent": "object", "step": _INT, "turn": _INT, "call_id": "object",
    "provider_call_id": "object", "tool": "object", "arguments": "object", "result": "object", "ok": "boolean",
    "error_type": "object", "error_message": "object",
    "decision": "object", "decided_by": "object", "rule": "object",
    "started_at": _TIME, "finished_at": _TIME, "duration_s": "float64",
}
USAGE_COLUMNS: dict[str, str] = {
    "model": "object", "requests": _INT, "prompt_tokens": _INT, "completion_tokens": _INT,
    "total_tokens": _INT, "cost_usd": "float64",
}
RUN_COLUMNS: dict[str, str] = {
    "run_id": "object", "agent": "object", "model": "object", "models": "object", "status": "object",
    "started_at": _TIME, "finished_at": _TIME, "duration_s": "float64", "steps": _INT, "model_calls": _INT,
    "tool_calls": _INT, "prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT,
    "cost_usd": "float64", "output": "object", "error_type": "object", "error_message": "object",
}


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    # Built as object first: text columns stay ``object`` with None for missing, whatever
    # pandas would infer (pandas 3 infers ``str`` only when a column happens to hold text).
    df = pd.DataFrame(rows, columns=list(columns), dtype=object)
    for name, dtype in columns.items():
        if dtype == _TIME:
            df[name] = pd.to_datetime(df[name], utc=True).astype(_TIME)
        elif dtype != "object":
            df[name] = df[name].astype(dtype)
    return df


def steps_df(events: Sequence[Any]) -> pd.DataFrame:
    """One row per model call and per tool call.

    Columns: run_id, agent, step (1-based order in the run), turn (the model call
    it belongs to), kind (``model``/``tool``), name (model or tool), call_id,
    started_at, finished_at, duration_s, ok, prompt_tokens, completion_tokens,
    total_tokens, cost_usd (NaN if unpriced), cached, error_type, error_message.
    """
    rows = [s.model_dump(include=set(STEP_COLUMNS)) for s in build_steps(events)]
    return _frame(rows, STEP_COLUMNS)


def tool_calls_df(events: Sequence[Any]) -> pd.DataFrame:
    """One row per tool call.

    Columns: run_id, agent, step, turn, call_id (unique in the run), provider_call_id
    (the id the provider sent, which may repeat), tool, arguments (the raw JSON the
    model sent), result (what the model was shown), ok, error_type, error_message,
    decision / decided_by / rule (the permission decision, if a policy ruled),
    started_at, finished_at, duration_s.
    """
    # Keyed by step as well: logs written before call ids were made unique may repeat them.
    decisions = {(ev.run_id, ev.step, ev.call_id): ev for ev in events if isinstance(ev, ApprovalResolved)}
    rows = []
    for s in build_steps(events):
        if s.kind != "tool":
            continue
        d = decisions.get((s.run_id, s.step, s.call_id))
        rows.append({
            **s.model_dump(include=set(TOOL_COLUMNS)), "tool": s.name,
            "decision": d.decision if d else None, "decided_by": d.by if d else None, "rule": d.rule if d else None,
        })
    return _frame(rows, TOOL_COLUMNS)


def usage_df(events: Iterable[Any]) -> pd.DataFrame:
    """Usage per model that served calls.

    Columns: model, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd
    (NaN for a model with no known price, never a silent 0).
    """
    rows = [
        {"model": ev.model, **ev.usage.model_dump(include={"requests", "prompt_tokens", "completion_tokens",
                                                           "total_tokens", "cost_usd"})}
        for ev in events if isinstance(ev, ModelCallFinished) and ev.error is None
    ]
    df = _frame(rows, USAGE_COLUMNS)
    if df.empty:
        return df
    grouped = df.groupby("model", sort=True)
    out = grouped[["requests", "prompt_tokens", "completion_tokens", "total_tokens"]].sum()
    out["cost_usd"] = grouped["cost_usd"].apply(lambda s: s.sum(skipna=False))  # NaN stays NaN
    return out.reset_index().astype(USAGE_COLUMNS)


def runs_df(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run.

    Columns: run_id, agent, model (the model that produced the final answer; for a run
    without one, the last model tried), models (every model tried, in order), status,
    started_at, finished_at, duration_s, steps, model_calls, tool_calls, prompt_tokens,
    completion_tokens, total_tokens, cost_usd, output, error_type, error_message.
    """
    rows = []
    for run in runs:
        events = run.log.events
        start = next((ev for ev in events if isinstance(ev, RunStarted)), None)
        end = next((ev for ev in reversed(events) if isinstance(ev, RunFinished)), None)
        steps = build_steps(events)
        usage = sum((s.total_tokens for s in steps if s.kind == "model"), 0)
        rows.append({
            "run_id": run.run_id, "agent": run.agent.name, "model": answering_model(events, run.model),
            "models": models_tried(events), "status": run.status.value,
            "started_at": start.ts if start else None, "finished_at": end.ts if end else None,
            "duration_s": (end.ts - start.ts).total_seconds() if start and end else float("nan"),
            "steps": len(steps), "model_calls": sum(s.kind == "model" for s in steps),
            "tool_calls": sum(s.kind == "tool" for s in steps),
            "prompt_tokens": sum(s.prompt_tokens for s in steps), "completion_tokens": sum(s.completion_tokens for s in steps),
            "total_tokens": usage,
            "cost_usd": sum((s.cost_usd for s in steps if s.kind == "model" and s.ok), 0.0),
            "output": end.output if end else None,
            "error_type": end.error.type if end and end.error else None,
            "error_message": end.error.message if end and end.error else None,
        })
    return _frame(rows, RUN_COLUMNS)
