"""The comparison's harness: rounds that alternate the systems' order, in one process, with wall and CPU per round.

Our own small runner rather than pyperf or pytest-benchmark: every ratio must be between systems measured in
the same process, each round running all of them (forward, then reversed, then forward ...), so a change in
machine load falls on all alike.  pyperf runs one benchmark per worker process and compares across runs;
pytest-benchmark times one function at a time; neither interleaves several async systems sharing one warm
server, one event loop and one litellm.  CPU counts this process and, for fan-out backends, its worker
processes (psutil), never the loopback server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

Sample = dict[str, float]
Job = Callable[[], Awaitable[Any]]


def descendants(exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """This process's children, theirs too, less ``exclude`` (the server)."""
    skip = set(exclude)
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in skip]


def children_cpu_s(exclude: Iterable[int] = ()) -> float:
    """CPU seconds (user + system) used so far by the living descendants, less ``exclude``."""
    total = 0.0
    for proc in descendants(exclude):
        try:
            times = proc.cpu_times()
        except psutil.Error:  # it ended meanwhile
            continue
        total += times.user + times.system
    return total


def _hwm_mb(pid: int | str) -> float:
    """A process's peak resident set (VmHWM, of its memory as it is since its exec), in MB; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    """This process's peak resident set so far.  Not ``ru_maxrss``: Linux carries that over an exec, so a
    child started from a big parent would report the parent's size."""
    return _hwm_mb("self")


def children_peak_rss_mb(exclude: Iterable[int] = ()) -> float:
    """The sum of the living descendants' own peaks, less ``exclude``."""
    return sum(_hwm_mb(proc.pid) for proc in descendants(exclude))


async def drain() -> None:
    """Let background work (litellm's logging worker) run while the loop is idle, so its CPU is counted."""
    for _ in range(5):
        await asyncio.sleep(0.02)


async def measure(job: Job, exclude: Iterable[int] = ()) -> tuple[Sample, Any]:
    """Run ``job`` once: wall seconds (to its end), CPU seconds (this process, and its workers), its value."""
    exclude = tuple(exclude)
    wall, cpu, kids, server = time.perf_counter(), time.process_time(), children_cpu_s(exclude), _cpu_s(exclude)
    value = await job()
    wall = time.perf_counter() - wall
    await drain()
    cpu_self = time.process_time() - cpu
    cpu_kids = children_cpu_s(exclude) - kids
    sample = {"wall_s": wall, "cpu_s": cpu_self + cpu_kids, "cpu_self_s": cpu_self, "cpu_workers_s": cpu_kids}
    sample["cpu_server_s"] = _cpu_s(exclude) - server  # the excluded (the server): on the same cores
    return sample, value


def _cpu_s(pids: Iterable[int]) -> float:
    """CPU seconds used so far by the processes ``pids`` (the loopback server)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def alternate(
    jobs: dict[str, Job],
    rounds: int,
    *,
    warmup: bool = True,
    exclude: Iterable[int] = (),
    after: Callable[[str, Sample, Any], Sample] | None = None,
    failures: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, list[Sample]]:
    """``rounds`` rounds of every job, the order reversed each round; per job, one ``Sample`` per round.

    ``after(name, sample, value)`` derives more figures from a round (e.g. per model call) and may check it.
    With ``failures``, a job that raises is dropped from the later rounds and its error kept there by name
    (the others go on); without, the error propagates.
    """
    names = list(jobs)
    samples: dict[str, list[Sample]] = {name: [] for name in names}

    async def one(name: str, timed: bool) -> Sample | None:
        try:
            if not timed:
                await jobs[name]()
                return None
            sample, value = await measure(jobs[name], exclude)
            return after(name, sample, value) if after is not None else sample
        except Exception as exc:  # noqa: BLE001 — a failing system is a row saying why, not the end of the run
            if failures is None:
                raise
            failures[name] = f"{type(exc).__name__}: {exc}"[:300]
            names.remove(name)
            samples.pop(name, None)
            log(f"  {name} dropped: {failures[name]}")
            return None

    if warmup:
        for name in list(names):
            await one(name, False)
    for i in range(rounds):
        order = list(names) if i % 2 == 0 else names[::-1]
        parts = []
        for name in order:
            sample = await one(name, True)
            if sample is not None:
                samples[name].append(sample)
                parts.append(f"{name} {sample['wall_s']:.3f}s")
        log(f"  round {i + 1}/{rounds}: " + ", ".join(parts))
    return samples


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def figure(samples: Sequence[Sample], key: str) -> dict[str, float]:
    """``spread`` of one key over the rounds."""
    return spread([s[key] for s in samples])
