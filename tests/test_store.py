"""The store: every event of every run in SQLite, read back in another session as results and DataFrames,
no secret on disk, old schemas migrated, and a store that cannot write never failing or losing a run."""

from __future__ import annotations

import math
import sqlite3
import threading
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from executus_nb import (
    Agent,
    ConfigError,
    EventStore,
    Executor,
    MemoryStore,
    RunResult,
    RunStatus,
    SQLiteStore,
    UserError,
    sim,
)
from executus_nb import tool as tool_decorator
from executus_nb.errors import StoreWarning
from executus_nb.frames import runs_df, steps_df, usage_df
from executus_nb.run.log import RunLog
from executus_nb.sinks.jsonl import event_json
from executus_nb.store.schema import MIGRATIONS, VERSION, migrate
from executus_nb.types.events import (
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    StoreFailed,
)
from executus_nb.types.usage import Usage
from tests.waiting import wait_until

WAIT = 120  # a guard against hanging, not a speed bound: the first run of a process imports litellm
DICT_KEY = "tok9f8e7d6c5b4a3210-store"
ENV_KEY = "tok0123456789abcdef-store"
CLOSED = "http://127.0.0.1:9/v1"  # nothing listens on port 9: the call fails fast


@tool_decorator
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def adder() -> Agent:
    return Agent(name="adder", model=sim.scripted([sim.call("add", a=2, b=3), sim.reply("5")]), tools=[add])


def dump(events) -> list[dict]:
    return [ev.model_dump(mode="json") for ev in events]


# -- a hand-made log with chosen times, agents, models and usage (for the filters and sums) -------------------


T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def hand_run(run_id: str, agent: str, model: str, at: datetime, status: str, tokens: int, cost: float) -> RunLog:
    """A run of one model call at ``at`` with ``tokens`` prompt tokens and ``cost``, ending ``status``."""
    log = RunLog(run_id, agent)
    usage = Usage(requests=1, prompt_tokens=tokens, completion_tokens=1, total_tokens=tokens + 1, cost_usd=cost)
    log.emit(RunStarted, ts=at, prompt="p", model=model, messages=[{"role": "user", "content": "p"}], max_steps=3)
    log.emit(ModelCallStarted, ts=at + timedelta(seconds=1), step=1, turn=1, model=model)
    message = {"role": "assistant", "content": "ok"}
    log.emit(ModelCallFinished, ts=at + timedelta(seconds=2), step=1, turn=1, model=model, message=message, usage=usage)
    output = "ok" if status == "succeeded" else None
    log.emit(RunFinished, ts=at + timedelta(seconds=3), status=RunStatus(status), output=output, usage=usage, steps=1)
    return log


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, list[RunLog]]:
    """Four runs over three days, two agents and two models, written by one store and closed."""
    logs = [
        hand_run("r1", "alice", "sim/big", T0, "succeeded", 100, 0.5),
        hand_run("r2", "bob", "sim/small", T0 + timedelta(hours=2), "failed", 10, 0.01),
        hand_run("r3", "alice", "sim/small", T0 + timedelta(days=1), "succeeded", 20, 0.02),
        hand_run("r4", "bob", "sim/big", T0 + timedelta(days=2), "succeeded", 200, 1.0),
    ]
    store = SQLiteStore(tmp_path / "history.db")
    for log in logs:
        store.append(log.events)
    store.close()
    return tmp_path / "history.db", logs


# -- the protocol ---------------------------------------------------------------------------------------------


def test_both_stores_are_event_stores_and_a_typo_or_a_wrong_object_is_a_config_error(tmp_path):
    assert isinstance(MemoryStore(), EventStore) and isinstance(SQLiteStore(tmp_path / "s.db"), EventStore)
    with pytest.raises(ConfigError, match="store"):
        Executor(stor=MemoryStore())
    with pytest.raises(ConfigError, match="EventStore"):
        Executor(store=object())
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot open the database"):
        SQLiteStore(tmp_path / "a-file" / "below-it.db")


@pytest.mark.parametrize("make", [MemoryStore, lambda tmp: SQLiteStore(tmp / "s.db")], ids=["memory", "sqlite"])
def test_appending_an_event_twice_keeps_one_and_events_come_back_in_seq_order(tmp_path, make):
    store = make(tmp_path) if make is not MemoryStore else MemoryStore()
    log = hand_run("r1", "alice", "sim/big", T0, "succeeded", 100, 0.5)
    store.append(list(reversed(log.events)))
    store.append(log.events[:2])
    store.flush(timeout=WAIT)
    assert dump(store.events("r1")) == dump(log.events)
    assert store.events("nope") == [] and store.run_ids() == ["r1"]
    store.close()


# -- a run persisted, read back in another session ----------------------------------------------------------


def test_a_run_is_stored_whole_and_read_back_by_a_new_connection_after_the_executor_closed(tmp_path):
    path = tmp_path / "runs.db"
    with Executor(store=SQLiteStore(path)) as executor:
        run = executor.run(adder(), "what is 2 + 3?")
        result = run.wait(timeout=WAIT)
    assert result.ok and result.output == "5"

    later = SQLiteStore(path)  # another session: its own connections, nothing of the first in memory
    assert dump(later.events(run.run_id)) == dump(run.log.events)
    assert later.result(run.run_id).model_dump() == result.model_dump()
    pd.testing.assert_frame_equal(later.runs_df(), runs_df([run]))
    pd.testing.assert_frame_equal(later.steps_df(run_id=run.run_id), steps_df(run.log.events))
    pd.testing.assert_frame_equal(later.usage_df(), usage_df(run.log.events))
    assert list(later.steps_df(run_id=run.run_id)["kind"]) == ["model", "tool", "model"]
    later.close()


def test_the_executor_reads_its_tables_through_the_store_so_a_new_session_sees_the_old_ones(tmp_path):
    path = tmp_path / "runs.db"
    with Executor(store=SQLiteStore(path)) as first:
        old = first.run(adder(), "first session").wait(timeout=WAIT)
    with Executor(store=SQLiteStore(path)) as second:
        new = second.run(Agent(name="echo"), "second session").wait(timeout=WAIT)
        assert second.runs == [r for r in second.runs if r.run_id == new.run_id]  # this session ran one
        df = second.runs_df()
        assert list(df["run_id"]) == [old.run_id, new.run_id]
        assert list(df["agent"]) == ["adder", "echo"] and set(df["status"]) == {"succeeded"}
        assert set(second.steps_df()["run_id"]) == {old.run_id, new.run_id}
        usage = second.usage_df()
        assert usage["requests"].sum() == 3  # two calls of the first session's run, one of the second's
        by_agent = second.usage_df(by=["agent"])  # grouped as the store groups it, across both sessions
        assert by_agent[["agent", "requests"]].values.tolist() == [["adder", 2], ["echo", 1]]
    alone = Executor()  # without a store, the executor's own runs, grouped the same way
    alone.run(Agent(name="echo"), "one").wait(timeout=WAIT)
    assert alone.usage_df(by="agent")[["agent", "requests"]].values.tolist() == [["echo", 1]]
    with pytest.raises(UserError, match="usage_df"):
        alone.usage_df(by=["week"])


def test_a_memory_store_gives_the_same_reads_in_one_process():
    store = MemoryStore()
    with Executor(store=store) as executor:
        run = executor.run(adder(), "2 + 3")
        result = run.wait(timeout=WAIT)
    assert store.result(run.run_id).model_dump() == result.model_dump()
    pd.testing.assert_frame_equal(executor.runs_df(), runs_df([run]))


def test_a_result_of_a_run_not_stored_or_not_finished_is_a_user_error(tmp_path, history):
    store = SQLiteStore(history[0])
    with pytest.raises(UserError, match="not in"):
        store.result("nope")
    unfinished = hand_run("r9", "carol", "sim/big", T0, "succeeded", 1, 0.0).events[:-1]
    store.append(unfinished)
    with pytest.raises(UserError, match="has not finished.*status running"):
        store.result("r9")
    assert store.run_ids(status="running") == ["r9"]
    with pytest.raises(UserError, match="not a run status"):
        store.runs_df(status="done")
    store.close()


# -- filters and usage ------------------------------------------------------------------------------------


def test_runs_are_filtered_by_start_agent_and_status(history):
    store = SQLiteStore(history[0])
    assert list(store.runs_df()["run_id"]) == ["r1", "r2", "r3", "r4"]
    assert list(store.runs_df(since=T0 + timedelta(hours=1))["run_id"]) == ["r2", "r3", "r4"]
    assert list(store.runs_df(since=datetime(2026, 12, 1))["run_id"]) == ["r3", "r4"]  # naive is UTC
    assert list(store.runs_df(since="2026-12-01")["run_id"]) == ["r3", "r4"]
    assert list(store.runs_df(since="2026-11-30T10:30:00+00:00")["run_id"]) == ["r2", "r3", "r4"]
    with pytest.raises(UserError, match="not an ISO date"):
        store.runs_df(since="yesterday")
    assert list(store.runs_df(agent="bob")["run_id"]) == ["r2", "r4"]
    assert list(store.runs_df(status="failed")["run_id"]) == ["r2"]
    assert list(store.runs_df(agent="alice", status=RunStatus.SUCCEEDED, since=T0 + timedelta(hours=3))["run_id"]) == [
        "r3"
    ]
    assert store.runs_df(agent="nobody").empty and list(store.runs_df(agent="nobody").columns) == list(
        store.runs_df().columns
    )


def test_usage_is_summed_by_model_by_agent_and_by_day(history):
    store = SQLiteStore(history[0])
    by_model = store.usage_df()
    assert by_model[["model", "requests", "prompt_tokens"]].values.tolist() == [
        ["sim/big", 2, 300],
        ["sim/small", 2, 30],
    ]
    assert by_model["cost_usd"].tolist() == pytest.approx([1.5, 0.03])
    by_agent = store.usage_df(by=["agent"])
    assert by_agent[["agent", "total_tokens"]].values.tolist() == [["alice", 122], ["bob", 212]]
    by_day = store.usage_df(by=["day"])
    assert [d.date().isoformat() for d in by_day["day"]] == ["2026-11-30", "2026-12-01", "2026-12-02"]
    assert by_day["prompt_tokens"].tolist() == [110, 20, 200] and str(by_day["day"].dtype) == "datetime64[ns, UTC]"
    recent = store.usage_df(since=T0 + timedelta(days=1), by=["agent", "model"])
    assert recent[["agent", "model", "requests"]].values.tolist() == [["alice", "sim/small", 1], ["bob", "sim/big", 1]]
    with pytest.raises(UserError, match="usage_df"):
        store.usage_df(by=["week"])


def test_an_unknown_cost_stays_nan_through_the_store(tmp_path):
    store = SQLiteStore(tmp_path / "nan.db")
    store.append(hand_run("r1", "alice", "sim/unpriced", T0, "succeeded", 5, math.nan).events)
    assert math.isnan(store.usage_df()["cost_usd"].iloc[0]) and math.isnan(store.result("r1").usage.cost_usd)
    store.close()


# -- secrets ---------------------------------------------------------------------------------------------


def echoing(secret: str) -> str:
    """A provider whose error repeats the key it was given, as some real ones do."""

    def fn(messages, tools):
        raise PermissionError(f"invalid api key {secret} for this project")

    return sim.function(fn)


def test_no_key_reaches_the_database_its_wal_or_its_journal(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    path = tmp_path / "secrets.db"
    store = SQLiteStore(path)
    executor = Executor(store=store)
    runs = [
        executor.run(Agent(name="dict-key", model={"model": echoing(DICT_KEY), "api_key": DICT_KEY}), "hi"),
        executor.run(Agent(name="env-key", model=echoing(ENV_KEY)), f"my key is {ENV_KEY}"),
        executor.run(
            Agent(
                name="closed", model={"model": "openai/x", "api_base": CLOSED, "api_key": DICT_KEY, "max_retries": 0}
            ),
            "hello",
        ),
    ]
    for run in runs:
        assert run.wait(timeout=WAIT).status is RunStatus.FAILED
    store.flush(timeout=WAIT)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("secrets.db")]
    assert path.with_name("secrets.db-wal") in files  # the WAL holds the latest commits until a checkpoint
    written = b"".join(p.read_bytes() for p in files)
    assert all(run.run_id.encode() in written for run in runs)  # the rows are there: the grep is not vacuous
    assert b"invalid api key" in written
    for key in (DICT_KEY, ENV_KEY):
        assert key.encode() not in written, f"{key} is in {[p.name for p in files if key.encode() in p.read_bytes()]}"
    executor.close()
    store.close()
    after = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("secrets.db"))
    assert DICT_KEY.encode() not in after and ENV_KEY.encode() not in after


# -- a store that cannot write ---------------------------------------------------------------------------


def gated_agent(gate: threading.Event) -> Agent:
    """A run that waits in its tool until ``gate`` is set: it is still going while the store fails."""

    @tool_decorator
    def wait_for_gate() -> str:
        """Wait for the test."""
        assert gate.wait(WAIT)
        return "opened"

    return Agent(
        name="gated", model=sim.scripted([sim.call("wait_for_gate"), sim.reply("done")]), tools=[wait_for_gate]
    )


def test_a_store_locked_too_long_warns_records_store_failed_and_writes_everything_once_unlocked(tmp_path):
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's long write
    gate = threading.Event()
    with pytest.warns(StoreWarning, match="could not write .*locked.*retried"):
        executor = Executor(store=store)
        run = executor.run(gated_agent(gate), "go")
        wait_until(lambda: store.failure is not None, timeout=WAIT)
        gate.set()
        result = run.wait(timeout=WAIT)
    assert result.ok and result.output == "done"  # the run went on
    failed = [ev for ev in run.log.events if isinstance(ev, StoreFailed)]
    assert len(failed) == 1 and failed[0].error.type == "OperationalError" and "locked" in failed[0].error.message
    assert failed[0].pending >= 1 and failed[0].store == repr(store)
    assert run.log.events.index(failed[0]) < len(run.log.events) - 1  # recorded while the run went on
    assert store.failure is not None and store.pending == len(run.log.events)  # nothing written, nothing dropped

    holder.execute("ROLLBACK")
    holder.close()
    store.flush(timeout=WAIT)
    assert store.failure is None and store.pending == 0
    assert dump(SQLiteStore(path).events(run.run_id)) == dump(run.log.events)
    executor.close()
    store.close()


def test_a_full_disk_is_retried_until_it_can_write_and_nothing_is_lost(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "full.db")
    real_write = SQLiteStore._write
    failures = {"left": 3}

    def full_disk(self, conn, batch):
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_write(self, conn, batch)

    monkeypatch.setattr(SQLiteStore, "_write", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        executor = Executor(store=store)
        runs = [executor.run(adder(), f"sum {i}") for i in range(5)]
        for run in runs:
            assert run.wait(timeout=WAIT).ok
        store.flush(timeout=WAIT)
    store_warnings = [w for w in caught if issubclass(w.category, StoreWarning)]
    assert len(store_warnings) == 1 and "disk is full" in str(store_warnings[0].message)  # once per episode
    assert failures["left"] == 0 and store.failure is None
    for run in runs:
        assert dump(store.events(run.run_id)) == dump(run.log.events)
    assert store.count() == sum(len(run.log.events) for run in runs)
    executor.close()
    store.close()


def test_a_read_only_database_is_retried_on_a_fresh_connection_once_it_is_writable_again(tmp_path, monkeypatch):
    path = tmp_path / "ro.db"
    store = SQLiteStore(path)  # created and migrated; from now on its writer may only open it read-only
    writable = SQLiteStore._connect

    def read_only(self):
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)

    monkeypatch.setattr(SQLiteStore, "_connect", read_only)
    with pytest.warns(StoreWarning, match="readonly database"):
        executor = Executor(store=store)
        result = executor.run(adder(), "2 + 3").wait(timeout=WAIT)
        wait_until(lambda: store.failure is not None, timeout=WAIT)
    assert result.ok  # the run went on
    assert store.failure.error.type == "OperationalError" and store.pending > 0
    monkeypatch.setattr(SQLiteStore, "_connect", writable)  # the file is writable again
    store.flush(timeout=WAIT)
    assert store.failure is None and store.pending == 0
    assert dump(SQLiteStore(path).events(executor.runs[0].run_id)) == dump(executor.runs[0].log.events)
    executor.close()
    store.close()


def test_closing_a_store_that_still_cannot_write_says_how_many_events_are_left(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "never.db")

    def broken(self, conn, batch):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(SQLiteStore, "_write", broken)
    log = hand_run("r1", "alice", "sim/big", T0, "succeeded", 1, 0.0)
    with pytest.warns(StoreWarning) as caught:
        store.append(log.events)
        wait_until(lambda: store.failure is not None, timeout=WAIT)
        store.close(timeout=0.2)
    texts = [str(w.message) for w in caught]
    assert any("readonly database" in t for t in texts)
    assert any(f"closed with {len(log.events)} events not written" in t for t in texts)


# -- schema versions -------------------------------------------------------------------------------------


def test_a_database_written_by_the_first_schema_opens_migrated_and_reads(tmp_path):
    path = tmp_path / "v1.db"
    log = hand_run("old-1", "alice", "sim/big", T0, "succeeded", 7, 0.25)
    unfinished = hand_run("old-2", "bob", "sim/small", T0 + timedelta(hours=1), "failed", 3, 0.0).events[:-1]
    with sqlite3.connect(path, isolation_level=None) as conn:  # what version 1 of the store wrote
        assert migrate(conn, upto=1) == 1
        conn.executemany(
            "INSERT INTO events (run_id, seq, kind, ts, agent, body) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    ev.run_id,
                    ev.seq,
                    ev.kind,
                    ev.ts.isoformat(timespec="microseconds"),
                    ev.agent,
                    event_json(ev).decode(),
                )
                for ev in [*log.events, *unfinished]
            ],
        )
        assert [c[1] for c in conn.execute("PRAGMA table_info(events)")] == [
            "run_id",
            "seq",
            "kind",
            "ts",
            "agent",
            "body",
        ]
    conn.close()

    store = SQLiteStore(path)
    assert store.version == VERSION == len(MIGRATIONS) >= 2
    assert dump(store.events("old-1")) == dump(log.events)
    assert store.result("old-1").model_dump() == RunResult.from_events(log.events).model_dump()
    df = store.runs_df()
    assert list(df["run_id"]) == ["old-1", "old-2"] and list(df["status"]) == ["succeeded", "running"]
    assert list(df["conversation_id"]) == ["old-1", "old-2"]
    assert store.run_ids(agent="bob", status="running", since=T0 + timedelta(minutes=30)) == ["old-2"]
    assert store.usage_df()["prompt_tokens"].sum() == 10
    store.append(hand_run("new-1", "carol", "sim/big", T0 + timedelta(days=1), "succeeded", 1, 0.0).events)
    assert store.run_ids() == ["old-1", "old-2", "new-1"]  # the migrated database takes new runs too
    store.close()
    assert SQLiteStore(path).version == VERSION  # opening it again migrates nothing
