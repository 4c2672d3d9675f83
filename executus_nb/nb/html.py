"""Static renderings of a run: HTML (for the widget body, nbconvert, GitHub) and compact text.

Styles are inline, not in a ``<style>`` block, because GitHub and untrusted
notebooks strip style elements.  All model and tool text is escaped: a model's
output must never become markup.  DOM hooks (stable): root ``executus-runview``
+ ``executus-status-<status>``, each step ``executus-step`` (a tool step that ran a sub-run holds its
view in ``executus-subrun``), each marker of the
timeline ``executus-marker executus-marker-<kind>`` (``failover``, ``budget_stopped``, ``review``…),
the budget left ``executus-budget``, the error panel ``executus-error``.
"""

from __future__ import annotations

from executus_nb.nb.summary import MarkerView, RunSummary, StepView, budget_text
from executus_nb.types.fmt import DETAIL_CHARS, esc, line, money_html, plural, show

NAME_CHARS = 200  # a tool or model name as the model sent it may be anything
SHOWN_CHARS = 2 * DETAIL_CHARS  # details arrive capped (with their notes) by the summary; this is a backstop

GREEN, RED, AMBER, BLUE, GREY = "#1a7f37", "#cf222e", "#bf8700", "#0969da", "#6e7781"
BADGE = {
    "queued": GREY,
    "running": AMBER,
    "succeeded": GREEN,
    "failed": RED,
    "timeout": RED,
    "cancelled": "#9a6700",
    "max_steps": "#9a6700",
    "stopped": "#9a6700",
    "budget_refused": "#9a6700",
    "budget_exceeded": "#9a6700",
}
MARKER_LABEL = {
    "failover": "↪ failover",
    "messages_rewritten": "✂ messages rewritten",
    "revision_requested": "↻ revision requested",
    "output_rejected": "✗ output rejected",
    "budget_stopped": "■ budget",
    "compacted": "⇊ compacted",
    "review": "⚖ review",
}
OLD_HOOKS = {"failover": "executus-failover"}  # a marker's hook from before markers, kept beside its own
MARKER_STYLE = "color:#9a6700;padding:1px 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis"
_WARNED = ("cancelled", "stopped", "budget_refused", "budget_exceeded")
BAR = {("model", "ok"): BLUE, ("tool", "ok"): "#2da44e"}

ROOT_STYLE = (
    "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:12px;line-height:1.4;"
    "border:1px solid #d0d7de;"
    "border-radius:6px;padding:6px 8px;max-width:980px"
)
HEADER_STYLE = "display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-bottom:4px"
TIMELINE_STYLE = "max-height:320px;overflow-y:auto;border-top:1px solid #eaeef2;padding-top:2px"
SUMMARY_STYLE = "display:flex;align-items:center;gap:6px;cursor:pointer;padding:1px 0"
LABEL_STYLE = "flex:0 0 240px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis"
TRACK_STYLE = "flex:1 1 auto;position:relative;height:10px;background:#f6f8fa;border-radius:2px"
DUR_STYLE = "flex:0 0 130px;text-align:right;color:#57606a;white-space:nowrap"
PRE_STYLE = "white-space:pre-wrap;margin:2px 0;padding:4px;background:#f6f8fa;max-height:200px;overflow:auto"
PANEL_STYLE = "margin-top:6px;padding:6px;border-left:4px solid {color};background:{bg};white-space:pre-wrap"


def _bar_color(s: StepView) -> str:
    if s.state == "running":
        return AMBER
    if s.state == "cancelled":
        return GREY
    return BAR.get((s.kind, s.state), RED)


def _step_html(s: StepView, origin: float, span: float) -> str:
    left = 100.0 * (s.start_s - origin) / span
    width = 100.0 * (s.duration_s if s.duration_s is not None else max(span + origin - s.start_s, 0.0)) / span
    dur = "…" if s.duration_s is None else f"{s.duration_s:.2f} s"
    tokens = f" · {s.tokens_in}→{s.tokens_out} tok" if s.kind == "model" and s.ok else ""
    mark = {"failed": "✗ ", "cancelled": "■ "}.get(s.state, "")
    label = esc(f"{mark}#{s.step} {s.kind} {s.name}", NAME_CHARS, multiline=False) + (" (cached)" if s.cached else "")
    details = "".join(
        f'<b>{esc(t, NAME_CHARS)}</b><pre style="{PRE_STYLE}">{esc(v, SHOWN_CHARS)}</pre>' for t, v in s.details
    )
    if s.decision:
        details += f'<b>permission</b><pre style="{PRE_STYLE}">{esc(s.decision, DETAIL_CHARS)}</pre>'
    if s.error is not None:
        details += f'<b>error</b><pre style="{PRE_STYLE}">{esc(str(s.error), DETAIL_CHARS)}</pre>'
    if s.subrun is not None:  # an agent used as a tool: its own timeline, nested
        details += f'<div class="executus-subrun" style="margin:4px 0">{render_html(s.subrun)}</div>'
    return (
        f'<details class="executus-step executus-kind-{s.kind} executus-state-{s.state}" data-step="{s.step}">'
        f'<summary style="{SUMMARY_STYLE}"><span class="executus-label" style="{LABEL_STYLE}" '
        f'title="{label}">{label}</span>'
        f'<span class="executus-track" style="{TRACK_STYLE}"><span class="executus-bar" style="position:absolute;'
        f"top:0;height:10px;border-radius:2px;min-width:2px;background:{_bar_color(s)};"
        f'left:{left:.2f}%;width:{min(width, 100 - left):.2f}%"></span></span>'
        f'<span class="executus-dur" style="{DUR_STYLE}">{dur}{tokens}</span></summary>'
        f'<div class="executus-details" style="margin:2px 0 6px 16px">{details}</div></details>'
    )


def _marker_html(m: MarkerView) -> str:
    extra = f" {OLD_HOOKS[m.kind]}" if m.kind in OLD_HOOKS else ""
    text = f"{MARKER_LABEL.get(m.kind, m.kind)} {m.text}"
    if m.detail:  # the summary, expandable under the marker's line
        return (
            f'<details class="executus-marker executus-marker-{esc(m.kind, 40)}{extra}" style="{MARKER_STYLE}">'
            f'<summary title="{esc(text, NAME_CHARS * 3)}">{esc(text, NAME_CHARS * 3, multiline=False)}</summary>'
            f'<div class="executus-marker-detail" style="white-space:pre-wrap;color:#57606a;margin-left:16px">'
            f"{esc(m.detail)}</div></details>"
        )
    return (
        f'<div class="executus-marker executus-marker-{esc(m.kind, 40)}{extra}" style="{MARKER_STYLE}" '
        f'title="{esc(text, NAME_CHARS * 3)}">{esc(text, NAME_CHARS * 3, multiline=False)}</div>'
    )


def _item_html(item: StepView | MarkerView, origin: float, span: float) -> str:
    return _marker_html(item) if isinstance(item, MarkerView) else _step_html(item, origin, span)


def render_body(summary: RunSummary) -> str:
    """The inside of a run view: header, timeline, then the output or the error panel."""
    status = summary.status.value
    badge = (
        f'<span class="executus-badge" style="padding:1px 7px;border-radius:9px;color:#fff;font-weight:600;'
        f'background:{BADGE.get(status, GREY)}">{status}</span>'
    )
    header = (
        f'<div class="executus-header" style="{HEADER_STYLE}"><b>{esc(summary.agent, NAME_CHARS, multiline=False)}</b>'
        f"<span>{esc(', '.join(summary.models), NAME_CHARS * 2, multiline=False)}</span>{badge}"
        f'<span class="executus-elapsed">{summary.elapsed_s:.2f} s</span>'
        f"<span>{plural(len(summary.steps), 'step')}</span>"
        f"<span>tokens: {summary.prompt_tokens} in / {summary.completion_tokens} out</span>"
        f'<span class="executus-cost">{money_html(summary.cost_usd)}</span>'
        + (
            f'<span class="executus-budget">{esc(budget_text(summary.budget_left), NAME_CHARS)}</span>'
            if summary.budget_left
            else ""
        )
        + "</div>"
    )
    # The axis starts at the first step: time before it (a first import) is in the header's elapsed.
    origin = min((s.start_s for s in summary.steps), default=0.0)
    end = max(summary.elapsed_s, max((s.start_s + (s.duration_s or 0.0) for s in summary.steps), default=0.0))
    span = max(end - origin, 1e-6)
    timeline = (
        f'<div class="executus-timeline" style="{TIMELINE_STYLE}">'
        + "".join(_item_html(item, origin, span) for item in summary.timeline)
        + "</div>"
    )
    tail = ""
    if summary.error is not None:
        color, bg = (AMBER, "#fff8c5") if status in _WARNED else (RED, "#ffebe9")
        tail = (
            f'<div class="executus-error" style="{PANEL_STYLE.format(color=color, bg=bg)}">'
            f"<b>{esc(summary.error.type, NAME_CHARS)}</b>: {esc(summary.error.message, DETAIL_CHARS)}</div>"
        )
    elif status == "succeeded":
        tail = (
            f'<div class="executus-output" style="{PANEL_STYLE.format(color=GREEN, bg="#f0fff4")}">'
            f"{esc(show(summary.output), SHOWN_CHARS)}</div>"
        )
    return f"{header}{timeline}{tail}"


def root_classes(summary: RunSummary) -> list[str]:
    """CSS classes of the view's root element."""
    return ["executus-runview", f"executus-status-{summary.status.value}"]


def render_html(summary: RunSummary) -> str:
    """The whole view as standalone HTML (for saved notebooks, nbconvert, GitHub)."""
    return f'<div class="{" ".join(root_classes(summary))}" style="{ROOT_STYLE}">{render_body(summary)}</div>'


def step_line(s: StepView) -> str:
    """One compact line for a step, as printed in a terminal."""
    dur = "running" if s.duration_s is None else f"{s.duration_s:.2f}s"
    extra = f" {s.tokens_in}→{s.tokens_out} tok" if s.kind == "model" and s.ok else ""
    err = f" ✗ {line(s.error.type, 80)}: {line(s.error.message)}" if s.error else ""
    return f"  #{s.step:<3} {s.kind:<5} {line(s.name, NAME_CHARS)} {dur}{extra}{err}"


def marker_line(m: MarkerView) -> str:
    """One compact line for a marker of the timeline, as printed in a terminal."""
    return f"  {m.kind.replace('_', ' ')} {line(m.text, NAME_CHARS * 3)}"


def item_line(item: StepView | MarkerView) -> str:
    return marker_line(item) if isinstance(item, MarkerView) else step_line(item)


def render_text(summary: RunSummary, *, steps: bool = True) -> str:
    """A compact text rendering: one header line, then one line per step and marker, in timeline order."""
    head = (
        f"Run {line(summary.run_id, 80)} · {line(summary.agent, NAME_CHARS)} · "
        f"{line(', '.join(summary.models), NAME_CHARS * 2)} · {summary.status.value} · "
        f"{plural(len(summary.steps), 'step')} · {summary.prompt_tokens}→{summary.completion_tokens} tok · "
        f"{summary.cost_text}"
    )
    if summary.budget_left:
        head += f" · {budget_text(summary.budget_left)}"
    lines = [head] + ([item_line(item) for item in summary.timeline] if steps else [])
    if summary.error is not None:
        lines.append(f"  error: {line(summary.error, DETAIL_CHARS)}")
    return "\n".join(lines)
