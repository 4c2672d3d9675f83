"""``--profile``: a pyinstrument profile of one coroutine, as its top inclusive frames and self time per package.

pyinstrument samples the main thread (every 1 ms, async mode off, so time on the loop is CPU or the idle
wait in ``select``); a frame's inclusive time is counted once per sample path even when it recurses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

SCAFFOLD = 0.95  # frames holding at least this share of the round are the loop itself, not left out silently


def _key(frame: Any) -> str:
    where = frame.file_path_short or frame.file_path or "?"
    return f"{frame.function} ({where}:{frame.line_no})"


def _package(frame: Any) -> str:
    path = frame.file_path or ""
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1].lstrip("/")
            if marker == "lib/python3":  # the standard library: lib/python3.11/asyncio/... → asyncio
                tail = tail.split("/", 1)[1] if "/" in tail else tail
            return tail.split("/", 1)[0].removesuffix(".py")
    if "/executus_nb/" in path:
        return "executus_nb"
    return path.rsplit("/", 1)[-1] or frame.function


async def profile(job: Callable[[], Awaitable[Any]], top: int = 25) -> dict[str, Any]:
    """Run ``job`` under pyinstrument; its top inclusive frames (below the scaffold) and self time by package."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        await job()
    finally:
        profiler.stop()
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is None:
        return {"total_s": 0.0, "frames": [], "packages": []}
    total = root.time
    inclusive: dict[str, float] = defaultdict(float)
    by_package: dict[str, float] = defaultdict(float)

    def walk(frame: Any, on_path: frozenset[str]) -> None:
        if frame.is_synthetic:  # pyinstrument's [self] and [await] leaves: counted in their parent's self time
            return
        key = _key(frame)
        if key not in on_path:
            inclusive[key] += frame.time
        by_package[_package(frame)] += frame.total_self_time
        for child in frame.children:
            walk(child, on_path | {key})

    walk(root, frozenset())
    frames = [
        {"frame": key, "seconds": secs, "percent": 100 * secs / total}
        for key, secs in sorted(inclusive.items(), key=lambda kv: -kv[1])
        if secs < SCAFFOLD * total
    ][:top]
    packages = [
        {"package": name, "seconds": secs, "percent": 100 * secs / total}
        for name, secs in sorted(by_package.items(), key=lambda kv: -kv[1])
    ][:12]
    return {"total_s": total, "frames": frames, "packages": packages}


def show(result: dict[str, Any]) -> None:
    """Print a profile's top frames and packages."""
    print(f"profile: {result['total_s']:.2f} s sampled on the main thread", flush=True)
    for f in result["frames"]:
        print(f"  {f['seconds']:7.2f} s {f['percent']:5.1f} %  {f['frame']}")
    print("self time by package:")
    for p in result["packages"]:
        print(f"  {p['seconds']:7.2f} s {p['percent']:5.1f} %  {p['package']}")
