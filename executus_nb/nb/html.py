"""Static renderings of a run: HTML (for the widget body, nbconvert, GitHub) and compact text.

Styles are inline, not in a ``<style>`` block, because GitHub and untrusted
notebooks strip style elements.  All model and tool text is escaped: a model's
output must never become markup.  DOM hooks (stable): root ``executus-runview``
+ ``executus-status-<status>``, each step ``executus-step``, the error panel
``executus-error``.
"""

from __future__ import annotations

import html

from executus_nb.nb.summary import RunSummary, StepView

DETAIL_CHARS = 2_000

GREEN, RED, AMBER, BLUE, GREY = "#1a7f37", "#cf222e", "#bf8700", "#0969da", "#6e7781"
BADGE = {"queued": GREY, "running": AMBER, "succeeded": GREEN, "failed": RED, "timeout": RED,
         "cancelled": "#9a6700", "max_steps": "#9a6700"}
BAR = {("model", "ok"): BLUE, ("tool", "ok"): "#2da44e"}

ROOT_STYLE = ("font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:12px;line-height:1.4;"
              "border:1px solid #d0d7de;"
              "border-radius:6px;padding:6px 8px;max-width:980px")
HEADER_STYLE = "display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-bottom:4px"
TIMELINE_STYLE = "max-height:320px;overflow-y:auto;border-top:1px solid #eaeef2;padding-top:2px"
SUMMARY_STYLE = "display:flex;align-items:center;gap:6px;cursor:pointer;padding:1px 0"
LABEL_STYLE = "flex:0 0 240px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis"
TRACK_STYLE = "flex:1 1 auto;position:relative;height:10px;background:#f6f8fa;border-radius:2px"
DUR_STYLE = "flex:0 0 130px;text-align:right;color:#57606a;white-space:nowrap"
PRE_STYLE = "white-space:pre-wrap;margin:2px 0;padding:4px;background:#f6f8fa;max-height:200px;overflow:auto"
PANEL_STYLE = "margin-top:6px;padding:6px;border-left:4px solid {color};background:{bg};white-space:pre-wrap"


def _clip(text: str, limit: int = DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit:,} more characters]"


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
    label = f"{mark}#{s.step} {s.kind} {s.name}" + (" (cached)" if s.cached else "")
    details = "".join(f"<b>{html.escape(t)}</b><pre style=\"{PRE_STYLE}\">{html.escape(_clip(v))}</pre>"
                      for t, v in s.details)
    if s.decision:
        details += f'<b>permission</b><pre style="{PRE_STYLE}">{html.escape(s.decision)}</pre>'
    if s.error is not None:
        details += f'<b>error</b><pre style="{PRE_STYLE}">{html.escape(str(s.error))}</pre>'
    return (
        f'<details class="executus-step executus-kind-{s.kind} executus-state-{s.state}" data-step="{s.step}">'
        f'<summary style="{SUMMARY_STYLE}"><span class="executus-label" style="{LABEL_STYLE}" '
        f'title="{html.escape(label)}">{html.escape(label)}</span>'
        f'<span class="executus-track" style="{TRACK_STYLE}"><span class="executus-bar" style="position:absolute;'
        f"top:0;height:10px;border-radius:2px;min-width:2px;background:{_bar_color(s)};"
        f'left:{left:.2f}%;width:{min(width, 100 - left):.2f}%"></span></span>'
        f'<span class="executus-dur" style="{DUR_STYLE}">{dur}{tokens}</span></summary>'
        f'<div class="executus-details" style="margin:2px 0 6px 16px">{details}</div></details>'
    )


def render_body(summary: RunSummary) -> str:
    """The inside of a run view: header, timeline, then the output or the error panel."""
    status = summary.status.value
    badge = (f'<span class="executus-badge" style="padding:1px 7px;border-radius:9px;color:#fff;font-weight:600;'
             f'background:{BADGE.get(status, GREY)}">{status}</span>')
    header = (
        f'<div class="executus-header" style="{HEADER_STYLE}"><b>{html.escape(summary.agent)}</b>'
        f'<span>{html.escape(", ".join(summary.models))}</span>{badge}'
        f'<span class="executus-elapsed">{summary.elapsed_s:.2f} s</span>'
        f'<span>{len(summary.steps)} step{"" if len(summary.steps) == 1 else "s"}</span>'
        f'<span>{summary.prompt_tokens} in / {summary.completion_tokens} out tokens</span>'
        f'<span>{summary.cost_text}</span></div>'
    )
    # The axis starts at the first step: time before it (a first import) is in the header's elapsed.
    origin = min((s.start_s for s in summary.steps), default=0.0)
    end = max(summary.elapsed_s, max((s.start_s + (s.duration_s or 0.0) for s in summary.steps), default=0.0))
    span = max(end - origin, 1e-6)
    timeline = (f'<div class="executus-timeline" style="{TIMELINE_STYLE}">'
                + "".join(_step_html(s, origin, span) for s in summary.steps) + "</div>")
    failovers = "".join(
        f'<div class="executus-failover" style="color:#9a6700">↪ failover {html.escape(f)}</div>'
        for f in summary.failovers)
    tail = ""
    if summary.error is not None:
        color, bg = (AMBER, "#fff8c5") if status == "cancelled" else (RED, "#ffebe9")
        tail = (f'<div class="executus-error" style="{PANEL_STYLE.format(color=color, bg=bg)}">'
                f"<b>{html.escape(summary.error.type)}</b>: {html.escape(summary.error.message)}</div>")
    elif status == "succeeded":
        tail = (f'<div class="executus-output" style="{PANEL_STYLE.format(color=GREEN, bg="#f0fff4")}">'
                f"{html.escape(_clip(str(summary.output)))}</div>")
    return f"{header}{timeline}{failovers}{tail}"


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
    err = f" ✗ {s.error.type}: {s.error.message}" if s.error else ""
    return f"  #{s.step:<3} {s.kind:<5} {s.name} {dur}{extra}{err}"


def render_text(summary: RunSummary, *, steps: bool = True) -> str:
    """A compact text rendering: one header line, then one line per step."""
    head = (
        f"Run {summary.run_id} · {summary.agent} · {', '.join(summary.models)} · {summary.status.value} · "
        f"{len(summary.steps)} steps · {summary.prompt_tokens}→{summary.completion_tokens} tok · {summary.cost_text}"
    )
    lines = [head] + ([step_line(s) for s in summary.steps] if steps else [])
    lines += [f"  failover {f}" for f in summary.failovers] if steps else []
    if summary.error is not None:
        lines.append(f"  error: {summary.error}")
    return "\n".join(lines)
