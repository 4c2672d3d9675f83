"""``Comparison``: two runs side by side, their steps aligned, as DataFrames (and HTML in Jupyter).

A step is one model call and the tool calls it asked for (the ``turn`` column of ``steps_df()``), as in
``executor.fork``.  Steps are aligned by their place in the conversation: a fork's own first step is
step ``forked_at + 1`` (the steps before it were its parent's, so its side is empty there).  The
tables are folded from the runs' logs on every read, so a comparison of a run still going stays current.
pandas is imported on first use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from executus_nb.types.events import Event
from executus_nb.types.fmt import clean, safe_str
from executus_nb.types.fold import ModelCallItem, RunFold, fold

if TYPE_CHECKING:
    import pandas as pd

PREVIEW_CHARS = 120
SIDES = ("a", "b")
SIDE_COLUMNS: dict[str, str] = {
    "model": "object",
    "tool_calls": "object",
    "tokens": "Int64",
    "cost_usd": "float64",
    "latency_s": "float64",
    "text": "object",
    "error": "object",
}
STEP_COLUMNS: dict[str, str] = {
    "step": "int64",
    **{f"{side}_{name}": dtype for side in SIDES for name, dtype in SIDE_COLUMNS.items()},
    "same": "boolean",
}
SUMMARY_COLUMNS: dict[str, str] = {
    "side": "object",
    "run_id": "object",
    "agent": "object",
    "model": "object",
    "status": "object",
    "steps": "int64",
    "tool_calls": "int64",
    "total_tokens": "int64",
    "cost_usd": "float64",
    "duration_s": "float64",
    "output": "object",
    "error_type": "object",
    "error_message": "object",
    "parent_run_id": "object",
    "forked_at": "Int64",
}


@dataclass(frozen=True)
class StepSide:
    """One run's step: the model that answered, what it asked for and said, and what the step cost."""

    model: str
    tool_calls: str
    tokens: int
    cost_usd: float
    latency_s: float
    text: str
    error: str | None
    answer: tuple[Any, ...]  # what ``same`` compares: the text, the tool calls (ids aside), the error type


def _preview(text: str) -> str:
    words = " ".join(text.split())
    return clean(words if len(words) <= PREVIEW_CHARS else words[: PREVIEW_CHARS - 1] + "…", multiline=False)


def _call_text(call: dict[str, Any]) -> tuple[str, tuple[str, str]]:
    """A tool call as ``name(a=1, b="x")`` and as a comparable ``(name, canonical arguments)``."""
    fn = call.get("function") or {}
    name, raw = safe_str(fn.get("name", "")), safe_str(fn.get("arguments") or "")
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return f"{name}({raw})", (name, raw)
    if isinstance(args, dict):
        shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items())
    else:
        shown = json.dumps(args, ensure_ascii=False)
    return f"{name}({shown})", (name, json.dumps(args, sort_keys=True, ensure_ascii=False))


def _side(calls: list[ModelCallItem]) -> StepSide:
    """A step from its model calls (more than one when the first failed over): the last one answered it."""
    last = calls[-1]
    message = last.message if last.ok and last.message is not None else {}
    text = safe_str(message.get("content") or "")
    shown, compared = [], []
    for call in message.get("tool_calls") or ():
        one, key = _call_text(call)
        shown.append(one)
        compared.append(key)
    error = f"{last.error.type}: {last.error.message}" if last.error is not None else None
    latencies = [c.latency_s for c in calls if c.latency_s is not None]
    return StepSide(
        model=last.model,
        tool_calls="; ".join(shown),
        tokens=sum(c.usage.total_tokens for c in calls),
        cost_usd=sum((c.usage.cost_usd for c in calls), 0.0),
        latency_s=sum(latencies) if latencies else math.nan,
        text=_preview(text),
        error=_preview(error) if error is not None else None,
        answer=(text, tuple(compared), last.error.type if last.error is not None else None),
    )


def steps_by_place(run: RunFold) -> dict[int, StepSide]:
    """A run's steps keyed by their place in the conversation (a fork's counted on from ``forked_at``)."""
    offset = (run.identity.forked_at if run.identity is not None else None) or 0
    turns: dict[int, list[ModelCallItem]] = {}
    for item in run.steps_in_order():
        if isinstance(item, ModelCallItem):
            turns.setdefault(item.turn, []).append(item)
    return {offset + turn: _side(calls) for turn, calls in sorted(turns.items())}


def _table(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    import pandas as pd  # on first use: ``import executus_nb`` stays light (Comparison is exported)

    df = pd.DataFrame(rows, columns=list(columns), dtype=object)
    dtype: Any
    for name, dtype in columns.items():
        if dtype != "object":
            df[name] = df[name].astype(dtype)
    return df


class Comparison:
    """Two runs side by side (``executor.compare(run_a, run_b)``): ``.df`` / ``.steps_df()`` their steps
    aligned, ``.summary_df()`` one row per run, ``diverged_at`` the first step they took differently."""

    def __init__(self, a: Sequence[Event], b: Sequence[Event]):
        self._logs = (a, b)  # the runs' own event lists: read afresh on every table

    def folds(self) -> tuple[RunFold, RunFold]:
        """Both runs, folded from their events as they stand now."""
        a, b = self._logs
        return fold(list(a)), fold(list(b))

    @property
    def run_ids(self) -> tuple[str, str]:
        a, b = self.folds()
        return a.run_id, b.run_id

    def steps_df(self) -> pd.DataFrame:
        """One row per step either run took, by place in the conversation.

        Columns: step, then for each side (``a_``, ``b_``) model (the one that answered), tool_calls
        (``name(arg=value)``, ``; ``-joined), tokens, cost_usd (NaN if unpriced), latency_s (the model's),
        text (a one-line preview of the answer), error (of a failed model call); and ``same``: both took
        the step alike (the same text and tool calls, ids aside), NA where only one of them took it.
        """
        sides = [steps_by_place(run) for run in self.folds()]
        rows = []
        for step in sorted(set(sides[0]) | set(sides[1])):
            row: dict[str, Any] = {"step": step}
            for name, steps in zip(SIDES, sides, strict=True):
                s = steps.get(step)
                for column in SIDE_COLUMNS:
                    row[f"{name}_{column}"] = getattr(s, column) if s is not None else None
            a, b = sides[0].get(step), sides[1].get(step)
            row["same"] = a.answer == b.answer if a is not None and b is not None else None
            rows.append(row)
        return _table(rows, STEP_COLUMNS)

    @property
    def df(self) -> pd.DataFrame:
        """The aligned steps (``steps_df()``)."""
        return self.steps_df()

    @property
    def diverged_at(self) -> int | None:
        """The first step both runs took differently, or None if every step both took was the same."""
        df = self.steps_df()
        differs = df[df["same"].eq(False).fillna(False)]
        return int(differs["step"].iloc[0]) if len(differs) else None

    def summary_df(self) -> pd.DataFrame:
        """One row per run: side, run_id, agent, model, status, steps (model calls with their tool calls),
        tool_calls, total_tokens, cost_usd, duration_s, output, error_type, error_message, parent_run_id,
        forked_at (the parent's step a fork starts after; NA for a run that is no fork)."""
        rows = []
        for name, run in zip(SIDES, self.folds(), strict=True):
            items = run.steps_in_order()
            identity = run.identity
            rows.append(
                {
                    "side": name,
                    "run_id": run.run_id,
                    "agent": run.agent,
                    "model": run.model,
                    "status": run.status.value,
                    "steps": len({i.turn for i in items if isinstance(i, ModelCallItem)}),
                    "tool_calls": sum(1 for i in items if not isinstance(i, ModelCallItem)),
                    "total_tokens": run.usage.total_tokens,
                    "cost_usd": run.usage.cost_usd,
                    "duration_s": run.elapsed_s() if run.finished else math.nan,
                    "output": run.output,
                    "error_type": run.error.type if run.error else None,
                    "error_message": run.error.message if run.error else None,
                    "parent_run_id": run.parent_run_id,
                    "forked_at": identity.forked_at if identity is not None else None,
                }
            )
        return _table(rows, SUMMARY_COLUMNS)

    def _repr_html_(self) -> str:
        from executus_nb.nb.compare_html import render_comparison_html

        return render_comparison_html(self)

    def __repr__(self) -> str:
        a, b = self.run_ids
        diverged = self.diverged_at
        return f"Comparison(a={a!r}, b={b!r}, diverged_at={diverged})"
