"""``make bench``: executus_nb beside pydantic-ai, the OpenAI Agents SDK and a bare litellm loop (issue 18).

Runs workloads 1–7, each in a fresh process of its own with its own loopback server (bench/step_server.py),
then writes bench/RESULTS.md (one table per workload, the machine, the date, this command) and
bench/results.json (every round's raw numbers).  The harness is bench/alternate.py (why our own: see there).

    python bench/compare.py              # the full run (~20 min on 2 cores)
    python bench/compare.py --quick      # fewer rounds and runs (< 5 min), to check it works
    python bench/compare.py --only 3,7 --profile   # some workloads; a pyinstrument profile of the fan-out
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before anything imports litellm (and for every child)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import datetime  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package and tests/ (the server) from a checkout

WORKLOADS = {
    "1": ("workload_steps", "per_step", "Per-step overhead"),
    "2": ("workload_steps", "growth", "Growth with history"),
    "3": ("workload_fanout", "fanout", "Fan-out"),
    "4": ("workload_local", "view", "Widget overhead"),
    "5": ("workload_startup", "startup", "Import and first call"),
    "6": ("workload_local", "memory", "Memory and analysis"),
    "7": ("workload_fanout", "store", "Store"),
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and runs (< 5 minutes)")
    parser.add_argument("--profile", action="store_true", help="profile one executus_nb fan-out round (pyinstrument)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="the workloads to run, e.g. 1,3 (default: all)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="server latency for the fan-outs (3, 7)")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md and results.json go")
    # Internal: one workload in this process, or one fan-out system alone for its peak RSS.
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fanout-rss", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.selected = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in args.selected if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    return args


def run_one(args: argparse.Namespace) -> None:
    """``--workload N --json PATH``: run workload N here and write its result."""
    module, function, _ = WORKLOADS[args.workload]
    result = asyncio.run(getattr(importlib.import_module(module), function)(args))
    args.json.write_text(json.dumps(result, indent=1, default=str))


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    """Every selected workload in a fresh process; their results with the machine and the command."""
    from report import machine

    flags = [*(["--quick"] if args.quick else []), *(["--profile"] if args.profile else [])]
    flags += ["--latency-ms", f"{args.latency_ms:g}"]
    command = " ".join(["python bench/compare.py", *sys.argv[1:]]).strip()
    if os.environ.get("MAKELEVEL"):
        command = f"make bench ({command})"
    results: dict[str, Any] = {
        "meta": {
            "command": command,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "mode": ("quick" if args.quick else "full")
            + ("" if len(args.selected) == len(WORKLOADS) else ", workloads " + ",".join(args.selected)),
            "machine": machine(),
            "load_start": os.getloadavg()[0],
        },
        "workloads": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for key in args.selected:
            title = WORKLOADS[key][2]
            print(f"== workload {key}: {title}", flush=True)
            out = Path(folder) / f"w{key}.json"
            t = time.perf_counter()
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--workload", key, "--json", str(out), *flags]
            )
            if done.returncode == 0 and out.exists():
                result = json.loads(out.read_text())
            else:
                result = {"title": title, "error": f"the workload's process exited with code {done.returncode}"}
            result["elapsed_s"] = time.perf_counter() - t
            print(f"== workload {key}: {result['elapsed_s']:.0f} s", flush=True)
            if "profile" in result:
                profile = result.pop("profile")
                profile["about"] = (
                    f"pyinstrument, one more fan-out round of workload {key} on the local backend (not counted in "
                    f"its figures), {profile['total_s']:.1f} s sampled on the main thread. Top inclusive frames "
                    "below the event loop's own; self time by package: "
                    + ", ".join(f"{p['package']} {p['percent']:.0f} %" for p in profile["packages"][:8])
                    + "."
                )
                results["profile"] = profile
            results["workloads"][key] = result
    results["meta"]["elapsed_s"] = time.perf_counter() - started
    results["meta"]["load_end"] = os.getloadavg()[0]
    return results


def main() -> None:
    args = parse()
    sys.path.insert(0, str(HERE))
    if args.fanout_rss:
        from workload_fanout import rss_child

        print(json.dumps(asyncio.run(rss_child(args.fanout_rss, args.base_url, args.runs))), flush=True)
        return
    if args.workload:
        run_one(args)
        return
    from report import markdown

    results = orchestrate(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = markdown(results)
    (args.out / "RESULTS.md").write_text(text)
    print(
        f"\nwrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'} in {results['meta']['elapsed_s'] / 60:.1f} min"
    )
    missed = text.split("## Targets missed", 1)[1].split("\n## ", 1)[0].strip()
    print("targets missed:\n" + missed)


if __name__ == "__main__":
    main()
