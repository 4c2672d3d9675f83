"""Who runs: the owner on every event and table row, from the run, its agent, its executor or the configuration,
the same in the live tables and in the tables read back from a store."""

from __future__ import annotations

import pytest

from executus_nb import Agent, Executor, SQLiteStore, sim
from executus_nb import tool as tool_decorator

WAIT = 120  # a guard against hanging, not a speed bound: the first run of a process imports litellm


@pytest.fixture(autouse=True)
def no_configuration(monkeypatch):
    """Nothing from the machine's environment: each test sets what it means to."""
    for name in ("EXECUTUS_OWNER", "EXECUTUS_CONFIG", "EXECUTUS_STORE", "EXECUTUS_CACHE", "EXECUTUS_MODEL"):
        monkeypatch.delenv(name, raising=False)


@tool_decorator
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def adder(owner: str | None = None, name: str = "adder") -> Agent:
    return Agent(name=name, owner=owner, model=sim.scripted([sim.call("add", a=2, b=3), sim.reply("5")]), tools=[add])


def owners(run) -> set[str | None]:
    """The owner every event of a finished run carries."""
    run.wait(timeout=WAIT)
    return {ev.owner for ev in run.log.events}


def test_the_run_owner_wins_then_the_agents_then_the_executors():
    executor = Executor(owner="team")
    assert owners(executor.run(adder(owner="bob"), "add", owner="alice")) == {"alice"}
    assert owners(executor.run(adder(owner="bob"), "add")) == {"bob"}
    assert owners(executor.run(adder(), "add")) == {"team"}
    assert owners(Executor().run(adder(), "add")) == {None}  # no owner anywhere: None, as before


def test_the_configured_owner_comes_after_the_executors_and_before_none(tmp_path, monkeypatch):
    config = tmp_path / "executus.toml"
    config.write_text('owner = "from-file"\n')
    assert owners(Executor(config=config).run(adder(), "add")) == {"from-file"}
    monkeypatch.setenv("EXECUTUS_OWNER", "from-env")
    assert owners(Executor(config=config).run(adder(), "add")) == {"from-env"}
    assert owners(Executor(config=config, owner="from-code").run(adder(), "add")) == {"from-code"}
    assert owners(Executor(config=config).run(adder(owner="agent"), "add")) == {"agent"}


def test_every_table_has_the_owner_after_the_agent():
    executor = Executor(owner="team")
    executor.run(adder(), "add").wait(timeout=WAIT)
    executor.run(adder(owner="bob"), "add", owner="alice").wait(timeout=WAIT)
    run = executor.runs[0]
    for df in (executor.runs_df(), executor.steps_df(), run.steps_df(), run.tool_calls_df()):
        columns = list(df.columns)
        assert columns.index("owner") == columns.index("agent") + 1
    assert list(executor.runs_df()["owner"]) == ["team", "alice"]
    assert list(executor.steps_df()["owner"]) == ["team"] * 3 + ["alice"] * 3  # model, tool, model per run
    assert list(run.tool_calls_df()["owner"]) == ["team"]


def test_usage_is_summed_per_owner_a_run_without_one_included():
    executor = Executor()
    for owner in ("alice", "bob", "alice", None):
        executor.run(adder(), "add", owner=owner).wait(timeout=WAIT)
    by_owner = executor.usage_df(by=["owner"])
    assert list(by_owner.columns)[:2] == ["owner", "requests"]
    requests = {owner: n for owner, n in zip(by_owner["owner"], by_owner["requests"], strict=True)}
    assert {k for k in requests if isinstance(k, str)} == {"alice", "bob"}
    assert requests["alice"] == 4 and requests["bob"] == 2  # two model calls per run
    unowned = [n for k, n in requests.items() if not isinstance(k, str)]
    assert unowned == [2]  # None (or NaN) is its own group, not dropped
    both = executor.usage_df(by=["owner", "agent"])
    assert set(both.columns[:2]) == {"owner", "agent"} and both["requests"].sum() == 8


def test_a_store_reads_the_owner_back_in_every_table(tmp_path):
    path = tmp_path / "runs.db"
    with Executor(store=SQLiteStore(path), owner="team") as executor:
        executor.run(adder(), "add").wait(timeout=WAIT)
        executor.run(adder(), "add", owner="alice").wait(timeout=WAIT)
    store = SQLiteStore(path)  # another session
    runs = store.runs_df()
    assert list(runs["owner"]) == ["team", "alice"]
    assert list(runs.columns).index("owner") == list(runs.columns).index("agent") + 1
    assert set(store.steps_df()["owner"]) == {"team", "alice"}
    assert list(store.tool_calls_df()["owner"]) == ["team", "alice"]
    by_owner = store.usage_df(by=["owner"])
    assert dict(zip(by_owner["owner"], by_owner["requests"], strict=True)) == {"alice": 2, "team": 2}
    reader = Executor(store=store)  # an executor over the store reads every session's runs
    assert list(reader.runs_df()["owner"]) == ["team", "alice"]
    assert list(reader.usage_df(by=["owner"])["owner"]) == ["alice", "team"]
    store.close()


def test_a_sub_run_and_generate_carry_the_executors_owner():
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    executor = Executor(owner="team", model=sim.scripted([sim.reply('{"value": 5}')]))
    assert executor.generate(Answer, "five") == Answer(value=5)
    assert {ev.owner for ev in executor.runs[-1].log.events} == {"team"}
    helper = Agent(name="helper", model=sim.scripted([sim.reply("42")]))
    lead = Agent(
        name="lead",
        model=sim.scripted([sim.call("helper", input="ask"), sim.reply("done")]),
        tools=[helper.as_tool()],
    )
    run = executor.run(lead, "go")
    run.wait(timeout=WAIT)
    df = executor.runs_df()
    assert sorted(df[df["agent"].isin(["lead", "helper"])]["agent"]) == ["helper", "lead"]
    assert set(df[df["agent"].isin(["lead", "helper"])]["owner"]) == {"team"}
