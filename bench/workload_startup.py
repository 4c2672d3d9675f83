"""Workload 5: import time of each system's entry module, and the time until its first model call returns, in a
fresh process each (rounds alternate the systems' order).

The child notes the clock, imports the entry module (``executus_nb``, ``litellm``, ``pydantic_ai``,
``agents``), then builds the system and makes one call to the step server (one reply, no tool); both times are
from the same start, so the first call includes the import and whatever the first call imports lazily.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alternate import spread
from peers import BARE, ENTRY_MODULES, EXECUTUS, SYSTEMS
from report import at_most, row
from step_server import StepServer

IMPORT_TARGET_S = 0.3  # bench_overhead.py's target for `import executus_nb`
HERE = Path(__file__).resolve().parent

_CHILD = """
import time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
import asyncio, json, sys
sys.path.insert(0, {bench!r})
import peers, step_server

async def first():
    system = peers.make({name!r}, {model!r})
    calls = await system.run(step_server.prompt(0), 0)
    assert calls == 1, calls

asyncio.run(first())
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "first_call_s": t2 - t0}}))
"""


def _fresh(name: str, model: dict[str, str]) -> dict[str, float]:
    code = _CHILD.format(module=ENTRY_MODULES[name], bench=str(HERE), name=name, model=model)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{name}: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def startup(opts: Any) -> dict[str, Any]:
    """Workload 5."""
    rounds = 2 if opts.quick else 5
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in SYSTEMS}
    with StepServer(latency_s=0.0) as server:
        model = server.model()
        for i in range(rounds):
            order = SYSTEMS if i % 2 == 0 else SYSTEMS[::-1]
            for name in order:
                samples[name].append(await asyncio.to_thread(_fresh, name, model))
            print(
                f"  round {i + 1}/{rounds}: "
                + ", ".join(
                    f"{n} {samples[n][-1]['import_s']:.2f}/{samples[n][-1]['first_call_s']:.2f}s" for n in order
                ),
                flush=True,
            )
    rows = []
    for key, metric in (("import_s", "import of the entry module"), ("first_call_s", "import → first call returned")):
        base = spread([s[key] for s in samples[BARE]])["median"]
        for name in SYSTEMS:
            fig = spread([s[key] for s in samples[name]])
            target = met = ""
            if name == EXECUTUS and key == "import_s":
                target, met = (
                    f"≤ {IMPORT_TARGET_S} s (bench_overhead.py)",
                    at_most(fig["median"], IMPORT_TARGET_S, " s"),
                )
            rows.append(
                row(
                    name,
                    metric,
                    fig,
                    unit="s",
                    ratio=fig["median"] / base,
                    target=target,
                    met=met,
                    note=f"`import {ENTRY_MODULES[name]}`" if key == "import_s" else "",
                )
            )
    return {
        "title": "Import and first call, in a fresh process",
        "about": f"{rounds} fresh processes per system, the systems' order alternating each round; the server "
        "answers the first call with the text at once.",
        "baseline": BARE,
        "params": {"rounds": rounds},
        "samples": samples,
        "rows": rows,
        "server_requests": server.requests,
    }
