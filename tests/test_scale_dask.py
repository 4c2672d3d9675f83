"""Fan-outs on a Dask cluster (``backend=Client(LocalCluster(...))``): tools from ``__main__``, bounds across
workers at a real server, a killed worker and ``retry_failed()``, and ``cancel()``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client, LocalCluster

from executus_nb import Agent, Executor
from tests.test_scale_processes import (
    SCRIPT,
    check_cancel_ends_every_cell,
    check_lost_then_retried,
    fan_out_at_server,
    gated_model,
)
from tests.waiting import WAIT, wait_until

pytest_plugins = ["tests.conftest_server"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A client on the module's cluster, its workers warm (each imported litellm for a first fan-out)."""
    with Client(cluster) as client:
        ex = Executor()
        fan = ex.fanout(Agent(name="warm"), [f"w{i}" for i in range(4)], backend=client).wait(WAIT)
        assert (fan.to_df().status == "succeeded").all()
        ex.close()
        yield client


@pytest.fixture
def dask_executor(client: Client) -> Iterator[Executor]:
    client.wait_for_workers(2, timeout=WAIT)  # a worker killed by an earlier test is back
    ex = Executor()
    yield ex
    ex.close()


def test_notebook_style_tools_run_on_dask_as_on_local(client, cluster, tmp_path):
    """The script's tools, sim/ model and output type (all in its ``__main__``) travel to the Dask workers."""
    marker = tmp_path / "imported-by"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), cluster.scheduler_address, str(marker)],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert marker.read_text().split() == [str(printed["parent"])]
    workers = set(client.run(os.getpid).values())
    ran_in = set()
    for here, there in zip(printed["local"], printed["remote"], strict=True):
        assert there["status"] == "succeeded" and there["is_answer"] and there["steps"] == here["steps"] == 3
        found, pid = there["output"]["found"].rsplit(" from pid ", 1)
        assert there["output"]["key"] == here["output"]["key"] == here["prompt"]
        assert found == here["output"]["found"].rsplit(" from pid ", 1)[0] == f"value of {here['prompt']}"
        ran_in.add(int(pid))
    assert ran_in <= workers


def test_concurrency_holds_across_dask_workers_at_the_server(client, dask_executor, openai_server):
    assert 2 <= fan_out_at_server(dask_executor, client, openai_server, concurrency=3) <= 3


def test_a_killed_dask_worker_fails_its_cells_and_retry_failed_reruns_them(client, dask_executor, tmp_path):
    gate = tmp_path / "gate"
    agent = Agent(name="slow", model=gated_model(gate, "dask-kill"))
    fan = dask_executor.fanout(agent, [f"q{i}" for i in range(6)], backend=client)
    wait_until(lambda: fan.counts()["running"] == 6, WAIT)  # every cell is on a worker, waiting at the gate
    pids = client.run(os.getpid)
    address, victim = sorted(pids.items())[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: address not in client.scheduler_info(n_workers=-1)["workers"], WAIT)
    gate.touch()
    fan.wait(WAIT)
    check_lost_then_retried(fan, address)


def test_cancel_ends_every_cell_on_dask_and_the_workers_stay_usable(client, dask_executor, tmp_path):
    gate = tmp_path / "gate"  # never opened while the fan-out runs: only cancel() ends its cells
    try:
        check_cancel_ends_every_cell(dask_executor, client, gate, "dask-cancel", lambda: client.run(os.getpid))
    finally:
        gate.touch()
