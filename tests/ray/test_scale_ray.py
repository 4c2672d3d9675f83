"""Fan-outs on Ray (``backend="ray"`` or a ``RayBackend``): tools from ``__main__``, bounds across actors at a
real server, a killed worker and ``retry_failed()``, ``cancel()``, and ``close()`` shutting down the Ray it
started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the Ray backend's tests need executus_nb[ray] (make test-ray)")

from executus_nb import Agent, BackendError, Executor, RayBackend  # noqa: E402
from tests.test_scale_processes import (  # noqa: E402
    SCRIPT,
    check_cancel_ends_every_cell,
    check_lost_then_retried,
    fan_out_at_server,
    gated_model,
)
from tests.waiting import WAIT, wait_until  # noqa: E402

pytest_plugins = ["tests.conftest_server"]

# A private cluster on 127.0.0.1 for the tests: no token file written to the home, as for the other servers.
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def backend() -> Iterator[RayBackend]:
    """One local Ray (two workers) for the module, started by the backend itself, its actors warm."""
    assert not ray.is_initialized()
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        pool = RayBackend(workers=2, num_cpus=2)
        pool.wait_ready(WAIT)
        yield pool
        pool.close()
        assert not ray.is_initialized()  # the backend started this Ray: close() shut it down
    finally:
        if before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture
def ray_executor(backend: RayBackend) -> Iterator[Executor]:
    ex = Executor()
    yield ex
    ex.close()


def test_notebook_style_tools_run_on_ray_as_on_local(backend, tmp_path):
    """The script's tools, sim/ model and output type (all in its ``__main__``) travel to the Ray workers."""
    marker = tmp_path / "imported-by"
    address = ray.get_runtime_context().gcs_address
    done = subprocess.run(
        [sys.executable, str(SCRIPT), f"ray:{address}", str(marker)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=WAIT * 2,
    )
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert marker.read_text().split() == [str(printed["parent"])]  # no worker ran the script again
    ran_in = set()
    for here, there in zip(printed["local"], printed["remote"], strict=True):
        assert there["status"] == "succeeded" and there["is_answer"] and there["steps"] == here["steps"] == 3
        found, pid = there["output"]["found"].rsplit(" from pid ", 1)
        assert there["output"]["key"] == here["output"]["key"] == here["prompt"]
        assert found == here["output"]["found"].rsplit(" from pid ", 1)[0] == f"value of {here['prompt']}"
        ran_in.add(int(pid))
    assert ran_in <= set(printed["pids"]) and printed["parent"] not in ran_in


def test_ray_runs_the_same_table_as_local(backend, ray_executor):
    agent = Agent(name="plain")
    prompts = [f"p{i}" for i in range(8)]
    here = ray_executor.fanout(agent, prompts).wait(WAIT).to_df()
    there = ray_executor.fanout(agent, prompts, backend=backend).wait(WAIT).to_df()
    columns = ["row", "col", "prompt", "model", "agent", "status", "output", "total_tokens", "steps"]
    assert there[columns].equals(here[columns])


def test_concurrency_holds_across_ray_actors_at_the_server(backend, ray_executor, openai_server):
    assert 2 <= fan_out_at_server(ray_executor, backend, openai_server, concurrency=3) <= 3


def test_a_killed_ray_worker_fails_its_cells_and_retry_failed_reruns_them(backend, ray_executor, tmp_path):
    gate = tmp_path / "gate"
    agent = Agent(name="slow", model=gated_model(gate, "ray-kill"))
    fan = ray_executor.fanout(agent, [f"q{i}" for i in range(6)], backend=backend)
    wait_until(lambda: fan.counts()["running"] == 6, WAIT)  # every cell is on a worker, waiting at the gate
    victim = backend.pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: fan.counts()["failed"] > 0, WAIT)  # the dead worker's cells end without the gate
    gate.touch()
    fan.wait(WAIT)
    check_lost_then_retried(fan, "Ray worker")
    assert victim not in backend.pids and len(backend.pids) == 2  # the dead worker's actor was made again


def test_cancel_ends_every_cell_on_ray_and_the_workers_stay_usable(backend, ray_executor, tmp_path):
    gate = tmp_path / "gate"  # never opened while the fan-out runs: only cancel() ends its cells
    try:
        check_cancel_ends_every_cell(ray_executor, backend, gate, "ray-cancel", lambda: backend.pids)
    finally:
        gate.touch()


def test_an_unpicklable_tool_is_named_before_any_cell_starts_on_ray(backend, ray_executor):
    import threading

    from executus_nb import tool

    lock = threading.Lock()

    @tool
    def guarded(x: int) -> int:
        """Uses a lock from the notebook."""
        with lock:
            return x

    with pytest.raises(BackendError, match="guarded"):
        ray_executor.fanout(Agent(name="g", tools=[guarded]), ["a"], backend=backend)


def test_backend_ray_starts_a_local_ray_and_executor_close_shuts_it_down():
    """``backend="ray"`` with no Ray connected: one is started for the executor and gone after ``close()``."""
    script = textwrap.dedent(
        """
        import json, psutil, ray
        from executus_nb import Agent, Executor
        ex = Executor()
        fan = ex.fanout(Agent(name="a"), ["x", "y", "z"], backend="ray").wait(120)
        children = psutil.Process().children(recursive=True)
        ex.close()
        gone, alive = psutil.wait_procs(children, timeout=30)
        print(json.dumps({"statuses": list(fan.to_df().status), "connected": ray.is_initialized(),
                          "started": len(children), "alive": [p.pid for p in alive]}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=WAIT * 2)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["statuses"] == ["succeeded"] * 3
    assert printed["started"] > 0 and printed["alive"] == [] and printed["connected"] is False


def test_ray_backend_checks_its_workers():
    with pytest.raises(BackendError, match="at least one worker"):
        RayBackend(workers=0)
