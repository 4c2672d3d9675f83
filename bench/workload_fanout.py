"""Workloads 3 and 7: a fan-out of 1,000 runs × 2 model calls at 50 ms, concurrency 100, on every system and
every executus_nb backend; and the same fan-out with a ``SQLiteStore`` against without (bench_store.py's rounds).

A backend's start-up (workers spawned, litellm imported in each) is timed apart, on a first fan-out of 4 cells,
then every system is warmed with a small fan-out before the alternating rounds.  Peak RSS comes from one fresh
process per system, alone (``compare.py --fanout-rss``): its own peak, plus its worker processes' peaks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alternate import Sample, alternate, children_peak_rss_mb, figure, peak_rss_mb
from peers import AGENTS_SDK, BARE, BARE_OPENAI, EXECUTUS, PYDANTIC_AI, Executus, System, make
from report import at_most, missing, row
from step_server import StepServer, prompt

CONCURRENCY = 100
CALLS_PER_RUN = 2
WARM_RUNS = 100
FIRST_CELLS = 4
LOCAL, PROCESSES, DASK = f"{EXECUTUS} (local)", f"{EXECUTUS} (processes)", f"{EXECUTUS} (dask)"
FANOUT_SYSTEMS = (BARE, BARE_OPENAI, LOCAL, PROCESSES, DASK, PYDANTIC_AI, AGENTS_SDK)
TARGETS = {LOCAL: 1.15, PROCESSES: 0.55}  # wall over the bare loop's
STORE_TARGET = 1.10
HERE = Path(__file__).resolve().parent


class DaskExecutus(Executus):
    """executus_nb on a ``Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True))``."""

    def __init__(self, model: dict[str, str], cluster: Any, client: Any):
        super().__init__(model, backend=client)
        self.cluster, self.client = cluster, client

    def close(self) -> None:
        super().close()
        self.client.close()
        self.cluster.close()


def _local_cluster() -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    # No dashboard: it is not part of the fan-out, and its server would take CPU from it.
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    return cluster, Client(cluster)


async def build(name: str, model: dict[str, str]) -> tuple[System, dict[str, float]]:
    """The fan-out system ``name``, started and ready; for a backend, its start-up times."""
    started = time.perf_counter()
    if name == PROCESSES:
        system: System = Executus(model, backend="processes")
    elif name == DASK:
        cluster, client = await asyncio.to_thread(_local_cluster)
        system = DaskExecutus(model, cluster, client)
    else:
        return make(EXECUTUS if name == LOCAL else name, model), {}
    cluster_s = time.perf_counter() - started
    try:
        await system.fanout([prompt(1, i) for i in range(FIRST_CELLS)], CONCURRENCY)
        pool = system.last_fan.backend if isinstance(system, Executus) and system.last_fan is not None else None
        if hasattr(pool, "wait_ready"):
            await asyncio.to_thread(pool.wait_ready, 120)
    except BaseException:
        system.close()
        raise
    system.reset()
    times = {"startup_s": time.perf_counter() - started}
    if name == DASK:
        times["cluster_s"] = cluster_s
    return system, times


def _per_call(runs: int):
    def after(name: str, sample: Sample, calls: int) -> Sample:
        assert calls == runs * CALLS_PER_RUN, f"{name} made {calls} model calls, not {runs * CALLS_PER_RUN}"
        return {**sample, "calls": calls, "cpu_ms": 1000 * sample["cpu_s"] / calls}

    return after


def rss_in_fresh_process(name: str, base_url: str, runs: int) -> dict[str, Any]:
    """Peak RSS of ``name`` doing one warm-up and one full fan-out, alone in a new process."""
    cmd = [sys.executable, str(HERE / "compare.py"), "--fanout-rss", name, "--base-url", base_url, "--runs", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    last = done.stdout.strip().splitlines()[-1:] or [""]
    try:
        return json.loads(last[0])
    except ValueError:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": tail[:300]}


async def rss_child(name: str, base_url: str, runs: int) -> dict[str, Any]:
    """``--fanout-rss``: in this fresh process, build ``name``, warm it, fan out ``runs``; the peaks."""
    model = {"model": "openai/test-model", "api_base": base_url, "api_key": "sk-bench"}
    try:
        system, _ = await build(name, model)
    except Exception as exc:  # noqa: BLE001 — reported as the row's reason
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        await system.fanout([prompt(1, i) for i in range(WARM_RUNS)], CONCURRENCY)
        system.reset()
        calls = await system.fanout([prompt(1, i) for i in range(runs)], CONCURRENCY)
        return {"self_mb": peak_rss_mb(), "workers_mb": children_peak_rss_mb(), "calls": calls}
    finally:
        system.close()


async def fanout(opts: Any) -> dict[str, Any]:
    """Workload 3."""
    runs, rounds = (200, 2) if opts.quick else (1000, 3)
    latency = opts.latency_ms / 1000
    prompts = [prompt(1, i) for i in range(runs)]
    systems: dict[str, System] = {}
    startup: dict[str, dict[str, float]] = {}
    failures: dict[str, str] = {}
    result: dict[str, Any] = {}
    with StepServer(latency_s=latency) as server:
        model = server.model()
        try:
            for name in FANOUT_SYSTEMS:
                try:
                    systems[name], startup[name] = await build(name, model)
                except Exception as exc:  # noqa: BLE001 — a backend that cannot start is a row saying why
                    failures[name] = f"{type(exc).__name__}: {exc}"[:300]
                    print(f"  {name}: not available: {failures[name]}", flush=True)
            for name, times in startup.items():
                if times:
                    print(f"  {name} start-up: {times['startup_s']:.2f} s", flush=True)

            def job(system: System) -> Any:
                return lambda: system.fanout(prompts, CONCURRENCY)

            for name, system in list(systems.items()):  # warm every system, its runs then dropped
                try:
                    await system.fanout(prompts[:WARM_RUNS], CONCURRENCY)
                    system.reset()
                except Exception as exc:  # noqa: BLE001 — as above
                    failures[name] = f"{type(exc).__name__}: {exc}"[:300]
                    systems.pop(name).close()
            per_call = _per_call(runs)

            def after(name: str, sample: Sample, calls: int) -> Sample:
                systems[name].reset()
                return per_call(name, sample, calls)

            samples = await alternate(
                {name: job(s) for name, s in systems.items()},
                rounds,
                warmup=False,
                exclude=[server.pid],
                after=after,
                failures=failures,
            )
            if opts.profile and LOCAL in systems:
                from top_frames import profile, show

                print(f"  profiling one {LOCAL} round (pyinstrument) ...", flush=True)
                result["profile"] = await profile(job(systems[LOCAL]))
                systems[LOCAL].reset()
                show(result["profile"])
        finally:
            for system in systems.values():
                system.close()
        rss: dict[str, dict[str, Any]] = {}
        for name in FANOUT_SYSTEMS:
            if name not in failures:
                print(f"  peak RSS of {name}, alone in a fresh process ...", flush=True)
                rss[name] = rss_in_fresh_process(name, server.base_url, runs)
    rows = _fanout_rows(samples, startup, failures, rss, runs)
    floor = runs / CONCURRENCY * CALLS_PER_RUN * latency
    result.update(
        title=f"Fan-out: {runs:,} runs × {CALLS_PER_RUN} calls at {opts.latency_ms:g} ms, concurrency {CONCURRENCY}",
        about=f"{rounds} rounds alternating, after a warm-up fan-out of {WARM_RUNS} per system. Peers fan out "
        f"with `asyncio.gather` under a `Semaphore({CONCURRENCY})`; executus_nb with `executor.fanout(agent, "
        f"prompts, models=[...], concurrency={CONCURRENCY}, backend=...)`. Latency-only floor: {floor:.2f} s. "
        "Client CPU counts this process and, for a backend, its worker processes (never the server).",
        baseline=BARE,
        params={"runs": runs, "rounds": rounds, "latency_s": latency, "concurrency": CONCURRENCY},
        samples=samples,
        startup=startup,
        failures=failures,
        rss=rss,
        rows=rows,
        server_requests=server.requests,
        notes=[
            "Peak RSS: each system alone in a fresh process (a warm-up of "
            f"{WARM_RUNS} then {runs:,} runs): the process's own peak + the sum of its worker processes' peaks.",
            "Start-up: from the executor (or the Dask cluster) being made to its workers being ready, "
            f"through a first fan-out of {FIRST_CELLS} cells; not in the rounds.",
        ],
    )
    return result


def _fanout_rows(
    samples: dict[str, list[Sample]],
    startup: dict[str, dict[str, float]],
    failures: dict[str, str],
    rss: dict[str, dict[str, Any]],
    runs: int,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = {k: figure(samples[BARE], k)["median"] for k in ("wall_s", "cpu_s", "cpu_ms")} if samples.get(BARE) else {}
    for name in FANOUT_SYSTEMS:
        if name in failures or not samples.get(name):
            rows.append(missing(name, "wall", failures.get(name, "no rounds")))
            continue
        for key, metric, unit in (
            ("wall_s", "wall", "s"),
            ("cpu_s", "client CPU", "s"),
            ("cpu_ms", "client CPU / model call", "ms"),
        ):
            fig = figure(samples[name], key)
            ratio = fig["median"] / base[key] if base else None
            target = met = note = ""
            if key == "wall_s" and name in TARGETS and ratio is not None:
                target, met = f"≤ {TARGETS[name]}× bare", at_most(ratio, TARGETS[name], "×")
            if key == "wall_s" and name in (PROCESSES, DASK):
                note = ", ".join(
                    f"{fig['median'] / figure(samples[other], key)['median']:.2f}× {label}"
                    for other, label in ((LOCAL, "local"), (BARE_OPENAI, "bare openai"))
                    if samples.get(other)
                )
            rows.append(row(name, metric, fig, unit=unit, ratio=ratio, target=target, met=met, note=note))
        server = figure(samples[name], "cpu_server_s")
        rows.append(
            row(name, "server CPU (not the client's)", server, unit="s", note=f"on the same {os.cpu_count()} cores")
        )
        got = rss.get(name, {})
        if "self_mb" in got:
            total = got["self_mb"] + got["workers_mb"]
            note = f"{got['self_mb']:.0f} here + {got['workers_mb']:.0f} in workers" if got["workers_mb"] else ""
            base_rss = rss.get(BARE, {}).get("self_mb")
            rows.append(
                row(
                    name,
                    "peak RSS (fresh process)",
                    {"median": total, "min": total, "max": total},
                    unit="MB",
                    ratio=total / base_rss if base_rss else None,
                    note=note,
                )
            )
        elif got:
            rows.append(missing(name, "peak RSS (fresh process)", got["error"]))
        for key, metric in (("cluster_s", "cluster start"), ("startup_s", "start-up, to workers ready")):
            if key in startup.get(name, {}):
                value = startup[name][key]
                rows.append(row(name, metric, {"median": value, "min": value, "max": value}, unit="s"))
    return rows


async def store(opts: Any) -> dict[str, Any]:
    """Workload 7: bench_store.py's plain and stored fan-out rounds, on the step server."""
    from bench_store import plain_round, store_round
    from peers import INSTRUCTIONS, lookup

    from executus_nb import Agent, tool

    runs, rounds = (200, 2) if opts.quick else (1000, 5)
    latency = opts.latency_ms / 1000
    agent = Agent(name="bench", instructions=INSTRUCTIONS, tools=[tool(lookup)])
    with tempfile.TemporaryDirectory() as folder, StepServer(latency_s=latency) as server:
        model = server.model()
        numbers = iter(range(1, 10_000))
        jobs = {
            "Executor()": lambda: plain_round(agent, model, runs),
            "Executor(store=SQLiteStore(...))": lambda: store_round(agent, model, runs, folder, next(numbers)),
        }
        await plain_round(agent, model, WARM_RUNS)
        await store_round(agent, model, WARM_RUNS, folder, 0)
        samples = await alternate(
            jobs, rounds, warmup=False, exclude=[server.pid], after=lambda name, sample, value: {**sample, **value}
        )
    plain, stored = samples["Executor()"], samples["Executor(store=SQLiteStore(...))"]
    base_wall, base_cpu = figure(plain, "wall")["median"], figure(plain, "cpu")["median"]
    rows = [
        row("Executor()", "wall", figure(plain, "wall"), unit="s", ratio=1.0),
        row("Executor()", "client CPU", figure(plain, "cpu"), unit="s", ratio=1.0),
    ]
    wall = figure(stored, "flushed")
    ratio = wall["median"] / base_wall
    rows += [
        row(
            "Executor(store=...)",
            "wall to the last run",
            figure(stored, "wall"),
            unit="s",
            ratio=figure(stored, "wall")["median"] / base_wall,
        ),
        row(
            "Executor(store=...)",
            "wall, every event on disk",
            wall,
            unit="s",
            ratio=ratio,
            target=f"≤ {STORE_TARGET}×",
            met=at_most(ratio, STORE_TARGET, "×"),
        ),
        row(
            "Executor(store=...)",
            "client CPU, with the flush",
            figure(stored, "flushed_cpu"),
            unit="s",
            ratio=figure(stored, "flushed_cpu")["median"] / base_cpu,
        ),
    ]
    events = figure(stored, "events")["median"]
    return {
        "title": f"Store: the fan-out ({runs:,} runs × 2 calls at {opts.latency_ms:g} ms) with a SQLiteStore and without",
        "about": f"bench_store.py's rounds (a fresh executor and store file per round), {rounds} rounds alternating; "
        f"{events:,.0f} events written a round, each stored round checked row for row.",
        "baseline": "Executor()",
        "params": {"runs": runs, "rounds": rounds, "latency_s": latency},
        "samples": samples,
        "rows": rows,
        "server_requests": server.requests,
    }
