"""Static renderings of a run: HTML (for the widget body, nbconvert, GitHub) and compact text.

All model and tool text is escaped: a model's output must never become markup.
The DOM hooks are stable: root ``executus-runview`` + ``executus-status-<status>``,
each step ``executus-step``, the error panel ``executus-error``.
"""

from __future__ import annotations

import html

from executus_nb.nb.summary import RunSummary, StepView

DETAIL_CHARS = 2_000

CSS = """
.executus-runview{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:12px;border:1px solid #d0d7de;border-radius:6px;padding:6px 8px;max-width:980px}
.executus-header{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-bottom:4px}
.executus-badge{padding:1px 7px;border-radius:9px;color:#fff;background:#6e7781;font-weight:600}
.executus-status-running .executus-badge,.executus-badge-running{background:#bf8700}
.executus-badge-queued{background:#8c959f}
.executus-badge-succeeded{background:#1a7f37}
.executus-badge-failed,.executus-badge-timeout{background:#cf222e}
.executus-badge-cancelled,.executus-badge-max_steps{background:#9a6700}
.executus-timeline{max-height:320px;overflow-y:auto;border-top:1px solid #eaeef2}
.executus-step>summary{display:flex;align-items:center;gap:6px;cursor:pointer;list-style:none;padding:1px 0}
.executus-step>summary::-webkit-details-marker{display:none}
.executus-label{flex:0 0 260px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.executus-track{flex:1 1 auto;position:relative;height:10px;background:#f6f8fa;border-radius:2px}
.executus-bar{position:absolute;top:0;height:10px;border-radius:2px;min-width:2px}
.executus-kind-model .executus-bar{background:#0969da}
.executus-kind-tool .executus-bar{background:#2da44e}
.executus-state-failed .executus-bar{background:#cf222e}
.executus-state-running .executus-bar{background:#bf8700}
.executus-dur{flex:0 0 120px;text-align:right;color:#57606a;white-space:nowrap}
.executus-details{margin:2px 0 6px 16px}
.executus-details pre{white-space:pre-wrap;margin:2px 0;padding:4px;background:#f6f8fa;max-height:200px;overflow:auto}
.executus-error{margin-top:6px;padding:6px;border-left:4px solid #cf222e;background:#ffebe9}
.executus-output{margin-top:6px;padding:6px;border-left:4px solid #1a7f37;background:#f0fff4;white-space:pre-wrap}
.executus-approval{margin-top:6px;padding:6px;border-left:4px solid #bf8700;background:#fff8c5}
"""


def _clip(text: str, limit: int = DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit:,} more characters]"


def _step_html(s: StepView, span: float) -> str:
    left = 100.0 * s.start_s / span
    width = 100.0 * (s.duration_s if s.duration_s is not None else max(span - s.start_s, 0.0)) / span
    dur = "…" if s.duration_s is None else f"{s.duration_s:.2f} s"
    tokens = f" · {s.tokens_in}→{s.tokens_out} tok" if s.kind == "model" and s.ok else ""
    label = f"#{s.step} {s.kind} {s.name}" + (" (cached)" if s.cached else "")
    details = "".join(f"<b>{html.escape(t)}</b><pre>{html.escape(_clip(v))}</pre>" for t, v in s.details)
    if s.decision:
        details += f"<b>permission</b><pre>{html.escape(s.decision)}</pre>"
    if s.error is not None:
        details += f"<b>error</b><pre>{html.escape(str(s.error))}</pre>"
    return (
        f'<details class="executus-step executus-kind-{s.kind} executus-state-{s.state}" data-step="{s.step}">'
        f'<summary><span class="executus-label" title="{html.escape(label)}">{html.escape(label)}</span>'
        f'<span class="executus-track"><span class="executus-bar" style="left:{left:.2f}%;width:{min(width, 100 - left):.2f}%">'
        f'</span></span><span class="executus-dur">{dur}{tokens}</span></summary>'
        f'<div class="executus-details">{details}</div></details>'
    )


def render_body(summary: RunSummary) -> str:
    """The inside of a run view: style, header, timeline, output or error panel."""
    status = summary.status.value
    header = (
        f'<div class="executus-header"><b>{html.escape(summary.agent)}</b>'
        f'<span>{html.escape(", ".join(summary.models))}</span>'
        f'<span class="executus-badge executus-badge-{status}">{status}</span>'
        f'<span class="executus-elapsed">{summary.elapsed_s:.2f} s</span>'
        f'<span>{len(summary.steps)} steps</span>'
        f'<span>{summary.prompt_tokens} in / {summary.completion_tokens} out tokens</span>'
        f'<span>{summary.cost_text}</span></div>'
    )
    span = max(summary.elapsed_s, max((s.start_s + (s.duration_s or 0.0) for s in summary.steps), default=0.0), 1e-6)
    timeline = '<div class="executus-timeline">' + "".join(_step_html(s, span) for s in summary.steps) + "</div>"
    tail = ""
    if summary.error is not None:
        tail = (f'<div class="executus-error"><b>{html.escape(summary.error.type)}</b>: '
                f"{html.escape(summary.error.message)}</div>")
    elif summary.status.value == "succeeded":
        tail = f'<div class="executus-output">{html.escape(_clip(str(summary.output)))}</div>'
    return f"<style>{CSS}</style>{header}{timeline}{tail}"


def root_classes(summary: RunSummary) -> list[str]:
    """CSS classes of the view's root element."""
    return ["executus-runview", f"executus-status-{summary.status.value}"]


def render_html(summary: RunSummary) -> str:
    """The whole view as standalone HTML (for saved notebooks, nbconvert, GitHub)."""
    return f'<div class="{" ".join(root_classes(summary))}">{render_body(summary)}</div>'


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
    if summary.error is not None:
        lines.append(f"  error: {summary.error}")
    return "\n".join(lines)
