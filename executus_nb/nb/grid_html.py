"""Cell and header states of a fan-out, and the grid's static HTML (same DOM hooks as the widget)."""

from __future__ import annotations

import math
from typing import Any

from executus_nb.nb.html import BADGE, GREY
from executus_nb.types.events import utcnow
from executus_nb.types.fmt import METRIC_TEXT, PRICE_UNKNOWN, clean, clip_end, esc, money, plural, safe_str, show
from executus_nb.types.fold import fold
from executus_nb.types.handles import FanoutHandle, RunRecord

PREVIEW_CHARS = 80
METRICS = {"latency": "latency", "cost": "cost", "tokens": "tokens"}


def _preview(run: RunRecord) -> str:
    """One line of the output (or of the error's point), control characters escaped, capped."""
    result = run.result
    if result is None:
        return ""
    if result.error is None:
        text = " ".join(show(result.output, 4 * PREVIEW_CHARS).split())
        text = text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
    else:
        # an error's point is at its end ("OpenAIException - RuntimeError: model down"): keep the end
        message = clip_end(safe_str(result.error.message), 4 * PREVIEW_CHARS)
        text = " ".join(message.rsplit(" - ", 1)[-1].split()) or safe_str(result.error.type)
        text = clip_end(text, PREVIEW_CHARS)
    return clean(text, multiline=False)


def _with_text(state: dict[str, Any]) -> dict[str, Any]:
    """Add what the cell displays, formatted once here (grid.js shows these strings, never formats)."""
    state["text"] = {
        metric: METRIC_TEXT[metric](state[metric]) if state[metric] is not None else "" for metric in METRICS
    }
    state["hint"] = {"cost": PRICE_UNKNOWN if _unknown(state["cost"]) else ""}
    state["color"] = BADGE.get(state["status"], GREY)
    figures = " · ".join(
        t
        for t in (
            plural(state["tokens"], "token") if state["tokens"] is not None else "",
            state["text"]["latency"],
            state["text"]["cost"],
        )
        if t
    )
    state["title"] = "\n".join(t for t in (state["preview"], figures) if t)
    return state


def _unknown(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def cell_state(run: RunRecord) -> dict[str, Any]:
    """What a grid cell shows: status, tokens, latency (s), cost ($), an output preview and their text."""
    result = run.result
    if result is not None:
        return _with_text(
            {
                "status": result.status.value,
                "tokens": result.usage.total_tokens,
                "latency": result.duration_s,
                "cost": result.usage.cost_usd,
                "preview": _preview(run),
            }
        )
    state = fold(run.log.events)
    if state.prompt is None:  # queued (no RunStarted): nothing to show yet
        return _with_text({"status": run.status.value, "tokens": None, "latency": None, "cost": None, "preview": ""})
    return _with_text(
        {
            "status": run.status.value,
            "tokens": state.usage.total_tokens,
            "latency": state.elapsed_s(utcnow()),
            "cost": state.usage.cost_usd,
            "preview": "",
        }
    )


def header_state(fanout: FanoutHandle) -> dict[str, Any]:
    """Progress and totals of the whole fan-out, as header text."""
    c = fanout.counts()
    states = [cell_state(cell.run) for cell in fanout.cells if cell.run.done]
    cost = sum(s["cost"] for s in states)
    cancelled = f" · {c['cancelled']} cancelled" if c["cancelled"] else ""
    tokens = sum(s["tokens"] for s in states)
    starts = [cell.run.log.events[0].ts for cell in fanout.cells if cell.run.log.events]
    ends = [cell.run.result.finished_at for cell in fanout.cells if cell.run.result is not None]
    elapsed = (
        ((max(ends) if c["done"] == c["total"] and ends else utcnow()) - min(starts)).total_seconds() if starts else 0.0
    )
    cost_text = money(cost)
    waited = fanout.oldest_wait_s()
    queue = f" (oldest waiting {waited:.1f} s)" if c["queued"] else ""
    return {
        "progress": (
            f"{c['done']}/{c['total']} done · {c['running']} running · {c['queued']} queued{queue} · "
            f"{c['failed']} failed{cancelled}"
        ),
        "totals": f"{plural(tokens, 'token')} · {cost_text} · {elapsed:.2f} s",
        "cost_hint": PRICE_UNKNOWN if _unknown(cost) else "",
        "done": c["done"] == c["total"],
    }


LABEL_CHARS = 1_000  # a heading's tooltip shows this much of a prompt; CSS cuts what is shown inline


def label_text(text: Any, limit: int = LABEL_CHARS) -> str:
    """A prompt or model label as a grid heading: one line, control characters escaped, capped."""
    words = " ".join(safe_str(text)[: 2 * limit].split())
    return clean(words if len(words) <= limit else words[: limit - 1] + "…", multiline=False)


def _label(text: Any) -> str:
    return esc(label_text(text))


def _title(text: str) -> str:
    return f' title="{esc(text)}"' if text else ""


def render_grid_html(fanout: FanoutHandle, metric: str = "latency") -> str:
    """The grid as standalone HTML: root ``executus-fanout``, cells ``executus-cell executus-status-…``."""
    states = [cell_state(cell.run) for cell in fanout.cells]
    values = [s[metric] for s in states if isinstance(s[metric], (int, float)) and math.isfinite(s[metric])]
    top = max(values, default=0) or 0
    head = header_state(fanout)
    cell_box = "text-align:left;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:180px"
    cols = "".join(
        f'<th style="padding:2px 4px;{cell_box}" title="{_label(label)}">{_label(label)}</th>'
        for label in fanout.labels
    )
    body = []
    n_cols = len(fanout.labels)
    for row, prompt in enumerate(fanout.prompts):
        tds = []
        for col in range(n_cols):
            s = states[row * n_cols + col]
            v = s[metric]
            alpha = 0.08 + 0.5 * v / top if top and isinstance(v, (int, float)) and math.isfinite(v) else 0
            bg = f"background:rgba(9,105,218,{alpha:.3f});" if alpha else ""
            tds.append(
                f'<td class="executus-cell executus-status-{s["status"]}" style="{cell_box};border:1px solid #d0d7de;'
                f'border-left:4px solid {s["color"]};padding:2px 4px;vertical-align:top;{bg}" '
                f'title="{esc(s["title"])}"><div class="executus-cell-status">{s["status"]}</div>'
                f'<div class="executus-cell-metric"{_title(s["hint"].get(metric, ""))}>{esc(s["text"][metric])}</div>'
                f'<div class="executus-cell-preview" style="color:#57606a;overflow:hidden;text-overflow:ellipsis">'
                f"{esc(s['preview'])}</div></td>"
            )
        body.append(
            f'<tr><th style="padding:2px 4px;{cell_box}" title="{_label(prompt)}">{_label(prompt)}'
            f"</th>{''.join(tds)}</tr>"
        )
    return (
        '<div class="executus-fanout" style="font-family:system-ui,sans-serif;font-size:12px;'
        'border:1px solid #d0d7de;border-radius:6px;padding:6px 8px">'
        f'<div class="executus-fanout-header" style="margin-bottom:6px">{esc(head["progress"])} · '
        f'<span class="executus-totals"{_title(head["cost_hint"])}>{esc(head["totals"])}</span> · '
        f"coloured by {esc(metric, 40)}</div>"
        f'<table style="border-collapse:collapse;table-layout:fixed"><thead><tr>'
        f'<th style="{cell_box}">prompt \\ model</th>{cols}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
