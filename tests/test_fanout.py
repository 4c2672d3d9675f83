"""Lanes and fan-out: fairness, limits, cancel-all, retry_failed, tables, and the FanoutGrid."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading

import comm
import pytest
from comm.base_comm import BaseComm

from executus_nb import Agent, Executor, RunStatus, UserError, sim
from executus_nb.lane import Lanes

pytest_plugins = ["tests.conftest_server"]


def echo_model(latency_s: float = 0.0, fail: bool = False, name: str = "m") -> str:
    def fn(messages, tools):
        if fail:
            raise RuntimeError("model down")
        return sim.reply("answer to " + messages[-1]["content"])

    return sim.function(fn, latency_s=latency_s, name=f"{name}-{latency_s}-{fail}")


# -- lanes -------------------------------------------------------------------------------


def test_lanes_take_turns_so_a_big_queue_cannot_starve_another_key():
    async def main():
        lanes = Lanes(max_running=2)
        order: list[str] = []

        queued_at: dict[str, int] = {}

        async def job(key: str, i: int):
            queued_at[f"{key}{i}"] = len(order)  # how many jobs had started when this one queued
            await lanes.acquire(key, "p")
            order.append(f"{key}{i}")
            await asyncio.sleep(0.005)
            lanes.release(key, "p")

        bulk = [asyncio.create_task(job("bulk", i)) for i in range(500)]
        await asyncio.sleep(0.02)  # the bulk lane is deep in its queue
        others = [asyncio.create_task(job("chat", i)) for i in range(3)]
        await asyncio.gather(*bulk, *others)
        return order, queued_at["chat0"]

    order, submitted_at = asyncio.run(main())
    assert 0 < submitted_at < 100  # the bulk lane had hundreds still queued
    chat_positions = [order.index(f"chat{i}") for i in range(3)]
    # the first interactive job takes the first slot that frees after it queued: only the (at most
    # max_running=2) bulk jobs already granted a slot, not yet running, start before it
    assert chat_positions[0] - submitted_at <= 3
    # then the lanes take turns: one bulk job between consecutive interactive ones
    assert [b - a for a, b in itertools.pairwise(chat_positions)] == [2, 2]


def test_lanes_respect_global_and_provider_limits():
    async def main():
        lanes = Lanes(max_running=5, provider_limits={"slow": 2})
        peak = {"all": 0, "slow": 0}
        now = {"all": 0, "slow": 0}

        async def job(provider: str):
            await lanes.acquire("k", provider)
            now["all"] += 1
            now[provider] = now.get(provider, 0) + 1
            peak["all"] = max(peak["all"], now["all"])
            peak["slow"] = max(peak["slow"], now.get("slow", 0))
            await asyncio.sleep(0.01)
            now["all"] -= 1
            now[provider] -= 1
            lanes.release("k", provider)

        await asyncio.gather(*(job("slow" if i % 2 else "fast") for i in range(40)))
        return peak, lanes

    peak, lanes = asyncio.run(main())
    assert peak == {"all": 5, "slow": 2}
    df = lanes.lanes_df()
    assert df.loc[0, "started"] == 40 and df.loc[0, "queued"] == 0 and df.loc[0, "max_wait_s"] > 0


def test_queued_run_shows_queued_and_cancel_while_queued_is_recorded():
    async def main():
        ex = Executor(max_running=1)
        first = ex.run(Agent(name="a", model=echo_model(0.3)), "one")
        second = ex.run(Agent(name="b", model=echo_model(0.0)), "two")
        await asyncio.sleep(0.05)
        status = second.status
        queued = ex.lanes_df().set_index("lane").loc["default", "queued"]
        second.cancel()
        return status, queued, await second, await first

    status, queued, second, first = asyncio.run(main())
    assert status is RunStatus.QUEUED and queued == 1
    assert second.status is RunStatus.CANCELLED and second.steps == []
    assert "queued" in second.error.message
    assert first.status is RunStatus.SUCCEEDED


# -- fan-out -----------------------------------------------------------------------------


def test_fanout_grid_tables_and_isolated_failures():
    ex = Executor()
    models = [echo_model(0.01, name="a"), echo_model(0.02, name="b"), echo_model(0.0, fail=True, name="bad")]
    prompts = [f"q{i}" for i in range(5)]
    fan = ex.fanout(Agent(name="qa"), prompts, models=models, concurrency=4).wait()
    df = fan.to_df()
    assert len(df) == 15 and list(df.prompt[:3]) == ["q0"] * 3
    assert (df[df.model == models[2]].status == "failed").all()
    assert (df[df.model != models[2]].status == "succeeded").all()
    assert df.loc[0, "output"] == "answer to q0"
    assert df.dtypes["latency_s"] == "float64" and df.dtypes["total_tokens"] == "int64"
    status = fan.pivot("status")
    assert status.shape == (5, 3) and list(status.index) == prompts and list(status.columns) == models
    cost = fan.pivot("cost")
    assert (cost[models[0]] == 0.0).all()
    with pytest.raises(UserError):
        fan.pivot("colour")
    assert repr(fan) == "Fanout(5×3: 15/15 done, 0 running, 0 queued, 5 failed)"


def test_fanout_with_agents_and_bad_arguments():
    ex = Executor()
    agents = [Agent(name="x", model=echo_model()), Agent(name="y", model=echo_model(name="y"))]
    fan = ex.fanout(prompts=["p"], agents=agents).wait()
    assert list(fan.pivot("output").columns) == ["x", "y"]
    for kwargs in (
        {"prompts": []},
        {"prompts": ["p"]},
        {"prompts": ["p"], "models": ["sim/x"], "agents": agents},
        {"prompts": ["p"], "agents": agents, "concurrency": 0},
    ):
        with pytest.raises(UserError):
            ex.fanout(**kwargs)


def test_fanout_of_one_agent_runs_its_own_model():
    """The first call a new user tries: an agent and prompts, no models= nor agents=."""
    ex = Executor()
    agent = Agent(name="solo", model=echo_model(name="own"))
    fan = ex.fanout(agent, ["a", "b", "c"]).wait()
    df = fan.to_df()
    assert list(df.status) == ["succeeded"] * 3 and list(df.model) == ["sim/fn-own-0.0-False"] * 3
    assert list(df.output) == ["answer to a", "answer to b", "answer to c"]
    assert list(fan.pivot("output").columns) == ["solo"]
    with pytest.raises(UserError, match="give the agent in agents="):
        ex.fanout(agent, ["a"], agents=[agent])
    with pytest.raises(UserError, match="fanout needs an agent"):
        ex.fanout(prompts=["a"])


def test_retry_failed_reruns_only_failed_cells():
    flaky_calls = {"n": 0}

    def flaky(messages, tools):
        flaky_calls["n"] += 1
        if flaky_calls["n"] <= 2:
            raise RuntimeError("transient")
        return sim.reply("ok")

    ex = Executor()
    fan = ex.fanout(Agent(name="qa"), ["a", "b"], models=[echo_model(name="good"), sim.function(flaky)]).wait()
    before = fan.to_df()
    assert list(before.status) == ["succeeded", "failed", "succeeded", "failed"]
    good_runs = [fan.runs[0], fan.runs[2]]
    fan.retry_failed().wait()
    after = fan.to_df()
    assert list(after.status) == ["succeeded"] * 4
    assert list(after.attempts) == [1, 2, 1, 2]
    assert [fan.runs[0], fan.runs[2]] == good_runs  # untouched cells keep their runs
    assert flaky_calls["n"] == 4


def test_cancel_all_stops_queued_and_running_cells():
    async def main():
        ex = Executor()
        fan = ex.fanout(
            Agent(name="qa"), [f"q{i}" for i in range(10)], models=[echo_model(1.0, name="slow")], concurrency=2
        )
        await asyncio.sleep(0.1)
        threading.Thread(target=fan.cancel).start()
        await asyncio.wait_for(fan, 5)
        return fan

    fan = asyncio.run(main())
    assert (fan.to_df().status == "cancelled").all()


def test_fanout_limits_never_exceeded_at_the_server(openai_server):
    openai_server.latency_s = 0.05
    ex = Executor()
    model = {"model": "openai/test-model", "api_base": openai_server.base_url, "api_key": "sk-x"}
    fan = ex.fanout(Agent(name="qa"), [f"q{i}" for i in range(24)], models=[model], concurrency=5).wait()
    assert (fan.to_df().status == "succeeded").all()
    assert openai_server.count == 24
    assert 2 <= openai_server.max_concurrency <= 5


def test_interactive_run_starts_within_the_next_free_slot_of_a_big_fanout(warm):
    async def main():
        ex = Executor(max_running=4)
        fan = ex.fanout(Agent(name="bulk"), [f"q{i}" for i in range(200)], models=[echo_model(0.02, name="bulk")])
        await asyncio.sleep(0.1)
        chat = ex.run(Agent(name="chat", model=echo_model(0.0, name="chat")), "hello")
        queued_at = asyncio.get_running_loop().time()
        await chat
        waited = asyncio.get_running_loop().time() - queued_at
        fan.cancel()
        await fan
        return waited, ex

    waited, ex = asyncio.run(main())
    assert waited < 0.5  # one slot frees every ~5 ms; 200 queued bulk runs would take ~1 s
    lanes = ex.lanes_df().set_index("lane")
    assert lanes.loc["default", "started"] == 1


# -- the grid ----------------------------------------------------------------------------


class RecordingComm(BaseComm):
    sent: list = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        RecordingComm.sent.append((msg_type, data or {}))


def test_grid_sends_only_changed_cells_at_a_bounded_rate(monkeypatch):
    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: RecordingComm(*a, **kw))

    async def main():
        ex = Executor()
        models = [echo_model(0.001 * i, fail=(i == 3), name=f"g{i}") for i in range(20)]
        fan = ex.fanout(Agent(name="qa"), [f"q{i}" for i in range(100)], models=models)
        grid = fan.view()
        started = asyncio.get_running_loop().time()
        await fan
        return fan, grid, asyncio.get_running_loop().time() - started

    fan, grid, elapsed = asyncio.run(main())
    patches = [d for t, d in RecordingComm.sent if t == "comm_msg" and d.get("method") == "custom"]
    assert len(patches) == grid.sent <= 4 * elapsed + 3
    cells_sent = sum(len(p["content"]["cells"]) for p in patches)
    assert cells_sent < 4 * 2000  # changed cells only, never the whole grid per update
    final = patches[-1]["content"]
    assert final["header"]["done"] is True and final["header"]["progress"].startswith("2000/2000 done")
    widgets_made = sum(1 for t, _ in RecordingComm.sent if t == "comm_open")
    assert widgets_made < 10  # one grid widget, not one per cell


def test_grid_static_html_click_and_cancel():
    async def main():
        ex = Executor()
        fan = ex.fanout(Agent(name="qa"), ["a", "b"], models=[echo_model(name="s1"), echo_model(fail=True, name="s2")])
        grid = fan.view()
        await fan
        grid._on_message(grid.grid, {"type": "select", "key": "1,0"}, None)
        grid._on_message(grid.grid, {"type": "cancel"}, None)
        return fan, grid

    fan, grid = asyncio.run(main())
    html = grid.html()
    assert html.startswith('<div class="executus-fanout"')
    assert html.count('class="executus-cell ') == 4
    assert html.count("executus-status-failed") == 2 and html.count("executus-status-succeeded") == 2
    assert grid._detail.children[0] is fan.runs[2].view().widget
    # finished, the grid stays a widget (clickable in a kernel) with its static HTML beside it
    assert set(grid.mimebundle()) == {"application/vnd.jupyter.widget-view+json", "text/html", "text/plain"}
    assert not math.isnan(fan.to_df().latency_s.iloc[0])


def test_arun_queues_in_the_lane_it_names():
    ex = Executor()
    result = asyncio.run(ex.arun(Agent(name="a", model=echo_model(name="lane")), "hi", lane="batch-7"))
    assert result.ok
    assert ex.lanes_df().set_index("lane").loc["batch-7", "started"] == 1
