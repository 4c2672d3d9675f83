"""Rows, targets and the Markdown of bench/RESULTS.md: one table per workload, the machine, the date, the command.

A row is a plain dict (so the JSON holds it as is): system, metric, median/min/max, ratio to the workload's
baseline, the target and whether it was met, by how much when not.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER_PACKAGES = ("litellm", "openai", "pydantic-ai-slim", "openai-agents", "distributed", "pandas", "pyinstrument")


def row(
    system: str,
    metric: str,
    fig: dict[str, float] | None,
    *,
    ratio: float | None = None,
    target: str = "",
    met: str = "",
    unit: str = "",
    note: str = "",
) -> dict[str, Any]:
    """One table row; ``fig`` is a median/min/max (None for a row with no figure, e.g. not available)."""
    out: dict[str, Any] = {"system": system, "metric": metric, "unit": unit, "ratio": ratio}
    out.update(fig or {"median": None, "min": None, "max": None})
    out.update(target=target, met=met, note=note)
    return out


def missing(system: str, metric: str, reason: str) -> dict[str, Any]:
    """A row for a system that could not be measured."""
    return row(system, metric, None, note=f"not available: {reason}")


def at_most(value: float, limit: float, unit: str = "") -> str:
    """``yes`` when ``value <= limit``, else ``no`` with how far over (absolute and in per cent)."""
    if value <= limit:
        return "yes"
    over = value - limit
    pct = f", {100 * over / limit:+.0f} %" if limit else ""
    return f"**no**: {value:.3g}{unit} is {over:.3g}{unit} over{pct}"


def machine() -> dict[str, Any]:
    """CPU count and model, RAM, Python and the versions that matter here."""
    model, ram = "?", "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for name in ("executus_nb", *PEER_PACKAGES):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        "versions": versions,
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def table(rows: Sequence[dict[str, Any]], baseline: str) -> str:
    """The Markdown table of one workload's rows."""
    lines = [
        f"| system | metric | median | min | max | ratio vs {baseline} | target | met? |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        metric = f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"]
        if r["median"] is None:
            cells = [r["system"], metric, r["note"] or "—", "", "", "", r["target"], r["met"]]
        else:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}×"
            met = f"{r['met']} ({r['note']})" if r["note"] and r["met"] else r["met"] or r["note"]
            cells = [r["system"], metric, _num(r["median"]), _num(r["min"]), _num(r["max"]), ratio, r["target"], met]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The whole of bench/RESULTS.md."""
    meta = results["meta"]
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    out = [
        "# executus_nb beside its peers",
        "",
        f"Written by `{meta['command']}` on {meta['date']} ({meta['mode']} run, {meta['elapsed_s'] / 60:.1f} min). "
        "Raw per-round numbers: `bench/results.json`. Each figure is the median over rounds, with min and max; "
        "every ratio is between systems measured in the same process, their order alternating each round.",
        "",
        f"- machine: {m['cpus']} CPUs, {m['cpu_model']}, {m['ram']} RAM, {m['platform']}",
        f"- Python {m['python']}; {versions}; commit {m['commit']}",
        f"- load average (1 min): {meta['load_start']:.2f} at start, {meta['load_end']:.2f} at end",
        "- server: tests/openai_server.py in its own process on 127.0.0.1 (bench/step_server.py); no client retries",
        "",
    ]
    for key, w in results["workloads"].items():
        out += [f"## {key}. {w['title']}", ""]
        if w.get("error"):
            out += [f"Not run to the end: {w['error']}", ""]
        if w.get("about"):
            out += [w["about"], ""]
        if w.get("rows"):
            out += [table(w["rows"], w.get("baseline", "baseline")), ""]
        for note in w.get("notes", []):
            out.append(f"- {note}")
        if w.get("notes"):
            out.append("")
    misses = [
        f"- {key}. {r['system']}, {r['metric']}: {r['met'].removeprefix('**no**: ')} (target {r['target']})"
        for key, w in results["workloads"].items()
        for r in w.get("rows", [])
        if r["met"].startswith("**no**")
    ]
    out += ["## Targets missed", ""] + (misses or ["None."]) + [""]
    profile = results.get("profile")
    if profile:
        out += [
            "## Where executus_nb's fan-out time goes",
            "",
            profile["about"],
            "",
            "| inclusive s | % of the round | frame |",
            "| ---: | ---: | --- |",
        ]
        out += [f"| {f['seconds']:.2f} | {f['percent']:.1f} | `{f['frame']}` |" for f in profile["frames"]]
        out.append("")
    return "\n".join(out)
