"""A ``Comparison`` as static HTML: the two runs side by side, step by step.

Inline styles (GitHub and untrusted notebooks strip style elements); every value from a run is
escaped.  DOM hooks (stable): root ``executus-compare``, each run's header ``executus-compare-run``,
each step row ``executus-compare-step`` plus ``executus-compare-same`` / ``executus-compare-differs``
/ ``executus-compare-one-side``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import pandas as pd

from executus_nb.nb.html import BADGE, GREY, RED, ROOT_STYLE
from executus_nb.types.fmt import UNKNOWN, esc, money_html, plural, seconds, show


class ComparisonTables(Protocol):
    """What the view reads of a ``Comparison`` (which points up to this view, so it is not imported here)."""

    @property
    def diverged_at(self) -> int | None: ...
    def summary_df(self) -> pd.DataFrame: ...
    def steps_df(self) -> pd.DataFrame: ...


NAME_CHARS = 200  # a model, tool or agent name may be anything
PREVIEW_CHARS = 120
CELL_STYLE = "vertical-align:top;padding:3px 6px;border-top:1px solid #eaeef2;width:48%"
MUTED = "color:#57606a"
MARK = {True: ("=", "executus-compare-same", ""), False: ("≠", "executus-compare-differs", "background:#fff8c5;")}


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _run_header(row: pd.Series) -> str:
    status = str(row["status"])
    fork = ""
    if not _missing(row["forked_at"]):
        fork = f" · forked from {esc(str(row['parent_run_id']), NAME_CHARS)} after step {int(row['forked_at'])}"
    output = (
        f"{esc(str(row['error_type']), NAME_CHARS)}: {esc(str(row['error_message']), PREVIEW_CHARS * 4)}"
        if not _missing(row["error_type"])
        else esc(show(row["output"], PREVIEW_CHARS * 4))
    )
    figures = " · ".join(
        [
            plural(int(row["steps"]), "step"),
            plural(int(row["total_tokens"]), "token"),
            money_html(row["cost_usd"]),
            esc(seconds(row["duration_s"])),
        ]
    )
    return (
        f'<td class="executus-compare-run" style="{CELL_STYLE};border-top:none">'
        f"<b>{esc(str(row['side']))}</b> · {esc(str(row['run_id']), NAME_CHARS)} · "
        f"{esc(str(row['agent']), NAME_CHARS)} · {esc(str(row['model']), NAME_CHARS)} · "
        f'<span style="color:{BADGE.get(status, GREY)}">{esc(status)}</span>{fork}'
        f'<div style="{MUTED}">{figures}</div>'
        f'<div style="white-space:pre-wrap;max-height:120px;overflow:auto">{output}</div></td>'
    )


def _side(row: pd.Series, side: str) -> str:
    if _missing(row[f"{side}_model"]):
        return f'<td style="{CELL_STYLE};{MUTED}">{UNKNOWN}</td>'
    parts = [f"<b>{esc(str(row[f'{side}_model']), NAME_CHARS)}</b>"]
    if row[f"{side}_tool_calls"]:
        parts.append(f"<div>→ {esc(str(row[f'{side}_tool_calls']), PREVIEW_CHARS * 4)}</div>")
    if row[f"{side}_text"]:
        parts.append(f"<div>{esc(str(row[f'{side}_text']))}</div>")
    if not _missing(row[f"{side}_error"]):
        parts.append(f'<div style="color:{RED}">{esc(str(row[f"{side}_error"]))}</div>')
    tokens = row[f"{side}_tokens"]
    figures = " · ".join(
        [
            plural(int(tokens), "token") if not _missing(tokens) else UNKNOWN,
            money_html(row[f"{side}_cost_usd"]),
            esc(seconds(row[f"{side}_latency_s"])),
        ]
    )
    parts.append(f'<div style="{MUTED}">{figures}</div>')
    return f'<td style="{CELL_STYLE}">{"".join(parts)}</td>'


def render_comparison_html(comparison: ComparisonTables) -> str:
    """Both runs' headers, then one row per step: step, side a, whether they match, side b."""
    summary, steps = comparison.summary_df(), comparison.steps_df()
    heads = [_run_header(row) for _, row in summary.iterrows()]
    rows = []
    for _, row in steps.iterrows():
        same = row["same"]
        mark, hook, bg = MARK[bool(same)] if not _missing(same) else ("", "executus-compare-one-side", "")
        rows.append(
            f'<tr class="executus-compare-step {hook}" style="{bg}">'
            f'<td style="vertical-align:top;padding:3px 4px;{MUTED}">#{int(row["step"])}</td>'
            f"{_side(row, 'a')}"
            f'<td style="vertical-align:top;padding:3px 2px;text-align:center" title="same answer?">{mark}</td>'
            f"{_side(row, 'b')}</tr>"
        )
    diverged = comparison.diverged_at
    note = f"first different step: {diverged}" if diverged is not None else "no step taken differently"
    return (
        f'<div class="executus-compare" style="{ROOT_STYLE}">'
        f'<div style="{MUTED};margin-bottom:4px">{esc(note)}</div>'
        '<table style="border-collapse:collapse;width:100%;table-layout:fixed">'
        f'<tr><td style="width:4%"></td>{heads[0]}<td style="width:2%"></td>{heads[1]}</tr>'
        f"{''.join(rows)}</table></div>"
    )
