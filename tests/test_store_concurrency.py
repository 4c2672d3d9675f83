"""One store under load: a 1,000-run fan-out and two processes writing one database at once lose no row
and never hit "database is locked"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

from executus_nb import Agent, Executor, SQLiteStore, sim
from executus_nb import tool as tool_decorator
from executus_nb.errors import StoreWarning

WAIT = 600  # a guard against hanging, not a speed bound (a busy CI machine, two cores)
ROOT = Path(__file__).resolve().parent.parent


@tool_decorator
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def two_step_agent() -> Agent:
    return Agent(name="fan", model=sim.scripted([sim.call("lookup", key="k"), sim.reply("done")]), tools=[lookup])


def test_a_thousand_run_fanout_into_one_store_loses_no_row_and_is_never_locked(tmp_path):
    store = SQLiteStore(tmp_path / "fanout.db")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        executor = Executor(store=store)
        fan = executor.fanout(prompts=[f"q{i}" for i in range(1000)], agents=[two_step_agent()], concurrency=100)
        fan.wait(timeout=WAIT)
        executor.close()
    assert fan.counts()["succeeded"] == 1000
    assert [w for w in caught if issubclass(w.category, StoreWarning)] == []
    assert store.failure is None and store.pending == 0

    logs = {run.run_id: run.log.events for run in fan.runs}
    later = SQLiteStore(tmp_path / "fanout.db")
    assert later.count() == sum(len(events) for events in logs.values())
    assert sorted(later.run_ids(status="succeeded")) == sorted(logs)
    stored = later.events_of(list(logs))
    assert all(len(stored[run_id]) == len(events) for run_id, events in logs.items())
    assert all(not any(ev.kind == "store_failed" for ev in events) for events in logs.values())
    later.close()
    store.close()


CHILD = """
import json, sys, warnings
sys.path.insert(0, {root!r})
warnings.simplefilter("always")
from executus_nb import Agent, Executor, SQLiteStore, sim
from tests.test_store import hand_run, T0
from tests.test_store_concurrency import two_step_agent

store = SQLiteStore({path!r})
executor = Executor(store=store)
agent = two_step_agent()
executor.run(agent, "warm").wait(timeout=120, quiet=True)
print("ready", flush=True)
sys.stdin.readline()  # both processes start writing together
fan = executor.fanout(prompts=[f"{name} q{{i}}" for i in range({runs})], agents=[agent], concurrency=50)
shared = hand_run("shared", "both", "sim/x", T0, "succeeded", 1, 0.0)
store.append(shared.events)  # both processes write this run: one copy is kept
fan.wait(timeout=600)
executor.close()
store.close()
print(json.dumps({{
    "succeeded": fan.counts()["succeeded"],
    "events": sum(len(run.log.events) for run in executor.runs),
    "run_ids": [run.run_id for run in executor.runs],
    "shared": len(shared.events),
}}), flush=True)
"""


def test_two_processes_writing_one_database_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.db"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path), runs=300, name=name)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for name in ("a", "b")
    ]
    try:
        for child in children:
            line = child.stdout.readline().strip()
            if line != "ready":  # a child that failed to start: stop it before reading why
                child.kill()
                raise AssertionError(f"child said {line!r}: {child.communicate(timeout=WAIT)[1]}")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        reports, errors = [], []
        for child in children:
            out, err = child.communicate(timeout=WAIT)
            assert child.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
            errors.append(err)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert [r["succeeded"] for r in reports] == [300, 300]
    assert not any("locked" in err or "StoreWarning" in err for err in errors), errors
    store = SQLiteStore(path)
    shared = reports[0]["shared"]
    assert store.count() == sum(r["events"] for r in reports) + shared
    run_ids = [run_id for r in reports for run_id in r["run_ids"]]
    assert len(set(run_ids)) == 602  # 300 + the warm-up run, in each process
    assert sorted(store.run_ids()) == sorted([*run_ids, "shared"])
    assert len(store.events("shared")) == shared
    store.close()
