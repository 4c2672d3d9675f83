"""Workloads 1 and 2: the cost of one model call in a tool-calling run, and how it grows with the run's history.

A run of K tool steps is K tool calls, then the text answer: K + 1 model calls, on a zero-latency server, so
the figures are the client's own cost (plus loopback).  Each round, every system does about the same number
of model calls (several runs), one run at a time.
"""

from __future__ import annotations

from typing import Any

from alternate import Sample, alternate, figure, spread
from peers import BARE, EXECUTUS, SYSTEMS, make
from report import at_most, row
from step_server import StepServer, prompt

OVERHEAD_MS = 1.0  # target: executus_nb's per-call overhead over the bare loop
GROWTH = 1.2  # target: per-call cost at 40 steps over that at 1
STEPS_1 = 20
STEPS_2 = (1, 10, 40)


def _jobs(systems: dict[str, Any], steps: int, runs: int) -> dict[str, Any]:
    def job(system: Any) -> Any:
        async def go() -> int:
            calls = 0
            for i in range(runs):
                calls += await system.run(prompt(steps, i), steps)
            system.reset()
            return calls

        return go

    return {name: job(system) for name, system in systems.items()}


def _per_call(expected: int):
    def after(name: str, sample: Sample, calls: int) -> Sample:
        assert calls == expected, f"{name} made {calls} model calls, not {expected}"
        return {
            **sample,
            "calls": calls,
            "wall_ms": 1000 * sample["wall_s"] / calls,
            "cpu_ms": 1000 * sample["cpu_s"] / calls,
        }

    return after


async def per_step(opts: Any) -> dict[str, Any]:
    """Workload 1: a 20-step tool-calling run, wall and CPU per model call, each system beside the bare loop."""
    runs, rounds = (2, 3) if opts.quick else (5, 7)
    calls = runs * (STEPS_1 + 1)
    with StepServer(latency_s=0.0) as server:
        systems = {name: make(name, server.model()) for name in SYSTEMS}
        samples = await alternate(_jobs(systems, STEPS_1, runs), rounds, exclude=[server.pid], after=_per_call(calls))
        for system in systems.values():
            system.close()
    rows = []
    base = {k: figure(samples[BARE], k)["median"] for k in ("wall_ms", "cpu_ms")}
    for name in SYSTEMS:
        for key, metric in (("wall_ms", "wall / model call"), ("cpu_ms", "client CPU / model call")):
            fig = figure(samples[name], key)
            target = met = note = ""
            if name == EXECUTUS and key == "wall_ms":
                over = fig["median"] - base[key]
                target, met, note = (
                    f"≤ +{OVERHEAD_MS:g} ms over bare",
                    at_most(over, OVERHEAD_MS, " ms"),
                    f"{over:+.2f} ms",
                )
            elif name == EXECUTUS:
                note = f"{fig['median'] - base[key]:+.2f} ms over bare"
            rows.append(
                row(name, metric, fig, unit="ms", ratio=fig["median"] / base[key], target=target, met=met, note=note)
            )
    return {
        "title": "Per-step overhead: a 20-step tool-calling run, zero-latency server",
        "about": f"{STEPS_1} tool calls then the answer ({STEPS_1 + 1} model calls a run), {runs} runs a round, "
        f"{rounds} rounds; every system's runs checked for exactly {STEPS_1 + 1} calls and the answer `done`.",
        "baseline": BARE,
        "params": {"steps": STEPS_1, "runs_per_round": runs, "rounds": rounds, "latency_s": 0.0},
        "samples": samples,
        "rows": rows,
        "server_requests": server.requests,
    }


async def growth(opts: Any) -> dict[str, Any]:
    """Workload 2: per-call cost at 1, 10 and 40 tool steps, and 40 over 1, per system."""
    target_calls, rounds = (44, 3) if opts.quick else (120, 7)
    plan = {k: max(1, round(target_calls / (k + 1))) for k in STEPS_2}  # runs per round at K steps
    with StepServer(latency_s=0.0) as server:
        systems = {name: make(name, server.model()) for name in SYSTEMS}
        jobs, checks = {}, {}
        for k, runs in plan.items():
            for name, job in _jobs(systems, k, runs).items():
                jobs[f"{name} @ {k}"] = job
                checks[f"{name} @ {k}"] = _per_call(runs * (k + 1))
        samples = await alternate(
            jobs, rounds, exclude=[server.pid], after=lambda n, s, v: checks[n](n, s, v), log=_quiet_log()
        )
        for system in systems.values():
            system.close()
    rows = []
    lo, hi = STEPS_2[0], STEPS_2[-1]
    for name in SYSTEMS:
        for k in STEPS_2:
            fig = figure(samples[f"{name} @ {k}"], "cpu_ms")
            bare = figure(samples[f"{BARE} @ {k}"], "cpu_ms")["median"]
            rows.append(row(name, f"client CPU / model call @ {k} steps", fig, unit="ms", ratio=fig["median"] / bare))
        for key, what in (("cpu_ms", "CPU"), ("wall_ms", "wall")):
            paired = [
                b[key] / a[key] for a, b in zip(samples[f"{name} @ {lo}"], samples[f"{name} @ {hi}"], strict=True)
            ]
            fig = spread(paired)
            target = met = ""
            if name == EXECUTUS and key == "cpu_ms":
                target, met = f"≤ {GROWTH}×", at_most(fig["median"], GROWTH, "×")
            rows.append(row(name, f"growth {what} / call, {hi} steps over {lo}", fig, unit="×", target=target, met=met))
    return {
        "title": "Growth with history: per-call cost at 1, 10 and 40 tool steps",
        "about": f"Runs of K tool calls then the answer (K + 1 model calls); per round, about {target_calls} model "
        f"calls at each K ({', '.join(f'{runs} runs at {k}' for k, runs in plan.items())}), {rounds} rounds, "
        "all 12 system × K jobs alternating. Growth is each round's own ratio (40 over 1), median over rounds.",
        "baseline": f"{BARE} (same K)",
        "params": {"steps": list(STEPS_2), "runs_per_round": plan, "rounds": rounds, "latency_s": 0.0},
        "samples": samples,
        "rows": rows,
        "server_requests": server.requests,
    }


def _quiet_log():
    """Print each round as one short line (12 jobs make a long one)."""

    def log(line: str) -> None:
        print(line[:160] + (" …" if len(line) > 160 else ""), flush=True)

    return log
