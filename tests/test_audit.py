"""The audit trail: JSON Lines of runs, tool calls and every approval decision, rotated by size, never a failed run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from executus_nb import Agent, AuditLog, AuditWarning, ConfigError, Executor, Policy, RunStatus, sim, tool
from executus_nb.run.ports import Ports
from tests.waiting import WAIT, wait_until


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def wipe() -> str:
    """Delete everything."""
    return "wiped"


@tool(permission="ask")
def publish(text: str) -> str:
    """Publish a text."""
    return f"published {text!r}"


@tool
def echo(text: str) -> str:
    """Say the text back."""
    return text


def adder(name: str = "adder") -> Agent:
    """A run of four audit records: started, the add call's decision, the call, finished."""
    return Agent(name=name, tools=[add], model=sim.scripted([sim.call("add", a=1, b=2), sim.reply("3")]))


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_run_leaves_who_ran_what_every_decision_by_whom_and_rule_and_how_it_ended(tmp_path):
    audit = AuditLog(tmp_path / "trail" / "audit.jsonl")
    asked = []

    def on_ask(request):
        asked.append(request.name)
        return True

    model = sim.scripted(
        [sim.calls(sim.call("add", a=2, b=3), sim.call("wipe"), sim.call("publish", text="hi")), sim.reply("ok")]
    )
    with Executor(audit=audit, policy=Policy(on_ask=on_ask).deny("wipe")) as executor:
        run = executor.run(Agent(name="clerk", tools=[add, wipe, publish], model=model), "go", owner="ana")
        result = run.wait(WAIT, quiet=True)
    assert result.status is RunStatus.SUCCEEDED and asked == ["publish"]
    assert audit.flush(WAIT)

    records = lines_of(tmp_path / "trail" / "audit.jsonl")  # every line is a JSON object
    assert records == audit.records()
    assert {(r["run_id"], r["owner"], r["agent"]) for r in records} == {(run.run_id, "ana", "clerk")}
    assert [r["event"] for r in records][0] == "run_started" and records[-1]["event"] == "run_finished"
    started, finished = records[0], records[-1]
    assert started["model"] == run.model and started["tools"] == ["add", "wipe", "publish"]
    assert finished["status"] == "succeeded" and finished["error"] is None and finished["steps"] == len(result.steps)
    assert finished["usage"]["total_tokens"] == result.usage.total_tokens > 0

    decisions = {r["tool"]: r for r in records if r["event"] == "approval"}
    assert (decisions["add"]["decision"], decisions["add"]["by"]) == ("allow", "policy")
    assert (decisions["wipe"]["decision"], decisions["wipe"]["by"], decisions["wipe"]["rule"]) == (
        "deny",
        "policy",
        "deny wipe",
    )
    assert (decisions["publish"]["decision"], decisions["publish"]["by"]) == ("allow", "on_ask")
    (request,) = [r for r in records if r["event"] == "approval_requested"]
    assert request["tool"] == "publish" and json.loads(request["arguments"]) == {"text": "hi"} and request["rule"]

    calls = {r["tool"]: r for r in records if r["event"] == "tool_call"}
    assert json.loads(calls["add"]["arguments"]) == {"a": 2, "b": 3}
    assert calls["add"]["ok"] is True and calls["add"]["decision"] == "allow"
    assert calls["wipe"]["ok"] is False and calls["wipe"]["error"]["type"] == "ToolDenied"
    assert (calls["wipe"]["decision"], calls["wipe"]["rule"]) == ("deny", "deny wipe")
    assert calls["publish"]["ok"] is True and calls["publish"]["by"] == "on_ask"
    assert all(r["ts"].endswith("+00:00") for r in records)


def test_a_failed_run_and_an_unknown_tool_are_in_the_trail_too(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    model = sim.scripted([sim.call("nope"), sim.reply("gave up")])
    with Executor(audit=audit) as executor:
        executor.run(Agent(tools=[add], model=model), "go").wait(WAIT, quiet=True)
        failed = executor.run(Agent(model=sim.failing(500, "down")), "go").wait(WAIT, quiet=True)
    records = audit.records()
    (unknown,) = [r for r in records if r["event"] == "tool_call"]
    assert unknown["tool"] == "nope" and unknown["ok"] is False and unknown["decision"] is None
    assert unknown["error"]["type"] == "UnknownToolError"
    (ended,) = [r for r in records if r["event"] == "run_finished" and r["run_id"] == failed.run_id]
    assert ended["status"] == "failed" and ended["error"]["type"] == failed.error.type


def test_rotation_keeps_every_record_whole_across_files_oldest_first(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, max_bytes=1_000, backups=50)
    with Executor(audit=audit) as executor:
        runs = [executor.run(adder(f"adder-{i}"), "go") for i in range(6)]
        for run in runs:
            assert run.wait(WAIT, quiet=True).ok
    assert audit.flush(WAIT)
    files = audit.files()
    assert len(files) > 2 and files[-1] == path and files[0] == tmp_path / f"audit.jsonl.{len(files) - 1}"
    for file in files:
        assert 0 < file.stat().st_size <= 1_000  # each file under the limit, ending in a whole line
        assert file.read_bytes().endswith(b"\n") and all(lines_of(file))
    records = audit.records()
    assert len(records) == 4 * len(runs)  # none lost, none written twice
    for run in runs:  # oldest first: each run's records in the order its events happened
        mine = [r for r in records if r["run_id"] == run.run_id]
        assert [r["event"] for r in mine] == ["run_started", "approval", "tool_call", "run_finished"]
        assert [r["seq"] for r in mine] == sorted(r["seq"] for r in mine)


def test_rotation_keeps_at_most_backups_older_files_and_the_newest_records(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, max_bytes=700, backups=2)
    with Executor(audit=audit) as executor:
        runs = [executor.run(adder(), "go") for _ in range(6)]
        for run in runs:
            assert run.wait(WAIT, quiet=True).ok
    assert audit.flush(WAIT)
    assert audit.files() == [tmp_path / "audit.jsonl.2", tmp_path / "audit.jsonl.1", path]
    assert not (tmp_path / "audit.jsonl.3").exists()
    records = audit.records()
    assert 0 < len(records) < 4 * len(runs)  # the oldest files were dropped, as asked
    assert records[-1]["event"] == "run_finished"
    assert records[-1]["run_id"] in {run.run_id for run in runs}


def test_a_record_larger_than_max_bytes_gets_a_file_of_its_own_whole(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl", max_bytes=10, backups=20)
    with Executor(audit=audit) as executor:
        assert executor.run(adder(), "go").wait(WAIT, quiet=True).ok
    assert audit.flush(WAIT)
    files = audit.files()
    assert len(files) == 4 and all(len(lines_of(f)) == 1 for f in files)
    assert [r["event"] for r in audit.records()] == ["run_started", "approval", "tool_call", "run_finished"]


def test_a_trail_that_cannot_be_written_warns_once_the_runs_go_on_and_nothing_is_lost(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.mkdir()  # a folder where the file should be: every write fails
    audit = AuditLog(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Executor(audit=audit) as executor:
            results = [executor.run(adder(), "go").wait(WAIT, quiet=True) for _ in range(3)]
            wait_until(lambda: audit.failure is not None, timeout=WAIT)
            assert audit.flush(5) is False  # tried again at once, still failing
    assert all(r.ok for r in results)  # never a failed run
    audit_warnings = [w for w in caught if issubclass(w.category, AuditWarning)]
    assert len(audit_warnings) == 1  # once for the episode, not once per try
    assert "could not write" in str(audit_warnings[0].message) and str(path) in str(audit_warnings[0].message)
    assert audit.failure.type == "IsADirectoryError" and audit.pending == 12

    path.rmdir()  # writable again
    assert audit.flush(WAIT) is True
    assert audit.failure is None and audit.pending == 0
    records = audit.records()
    assert len(records) == 12 and {r["run_id"] for r in records} == {r.run_id for r in results}


def test_a_full_disk_is_retried_and_no_record_is_half_written_or_written_twice(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    real_fsync = os.fsync
    failures = {"left": 3}

    def full_disk(fd):
        if failures["left"]:  # after the bytes went in: they must be taken out again
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Executor(audit=audit) as executor:
            results = [executor.run(adder(), "go").wait(WAIT, quiet=True) for _ in range(4)]
        wait_until(lambda: audit.flush(WAIT), timeout=WAIT)  # each flush tries again at once
    assert all(r.ok for r in results) and failures["left"] == 0
    assert len([w for w in caught if issubclass(w.category, AuditWarning)]) == 1
    records = lines_of(path)
    assert len(records) == 16 and len({(r["run_id"], r["seq"]) for r in records}) == 16


def test_secrets_never_reach_the_file(tmp_path):
    key = "sk-audit-secret-4f9a2b7c1d"
    audit = AuditLog(tmp_path / "audit.jsonl")
    model = {"model": sim.scripted([sim.call("echo", text=f"key={key}"), sim.reply(f"it is {key}")]), "api_key": key}
    with Executor(audit=audit) as executor:
        result = executor.run(Agent(tools=[echo], model=model), f"use {key}").wait(WAIT, quiet=True)
    assert result.ok
    assert audit.flush(WAIT)
    text = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert key not in text and "tool_call" in text
    (call,) = [r for r in audit.records() if r["event"] == "tool_call"]
    assert key not in call["arguments"] and "***" in call["arguments"]


def test_audit_df_is_the_trail_as_a_table(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    with Executor(audit=audit) as executor:
        run = executor.run(adder(), "go")
        run.wait(WAIT, quiet=True)
    df = audit.audit_df()
    assert list(df.event) == ["run_started", "approval", "tool_call", "run_finished"]
    assert set(df.run_id) == {run.run_id} and str(df.ts.dtype).startswith("datetime64") and df.ts.dt.tz is not None
    assert audit.read() == audit.records()


def test_queued_records_are_written_at_exit_without_close(tmp_path):
    path = tmp_path / "audit.jsonl"
    script = textwrap.dedent(
        f"""
        from executus_nb import AuditLog
        from executus_nb.types.events import RunFinished, RunStarted
        from executus_nb.types.identity import RunIdentity

        audit = AuditLog({str(path)!r})
        for n in range(50):
            who = RunIdentity(run_id=f"r{{n}}", agent="exiting")
            audit.on_event(RunStarted(identity=who, prompt="p", model="sim/x", messages=[], max_steps=1))
            audit.on_event(RunFinished(identity=who, seq=1, status="succeeded"))
        print("queued")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    records = lines_of(path)
    assert len(records) == 100 and records[-1] == records[-1] | {"run_id": "r49", "event": "run_finished"}


def test_executor_audit_takes_an_audit_log_an_audit_port_or_fails_clearly(tmp_path):
    class Trail:
        def __init__(self):
            self.calls = []

        def record(self, ctx, call, result):
            self.calls.append(call.name)

    trail = Trail()
    with Executor(audit=trail) as executor:
        assert executor.run(adder(), "go").wait(WAIT, quiet=True).ok
    assert trail.calls == ["add"]
    audit = AuditLog(tmp_path / "a.jsonl")
    executor = Executor(audit=audit)
    assert audit in executor.ports.sinks and executor.ports.sinks.count(audit) == 1
    with pytest.raises(ConfigError, match="audit"):
        Executor(audit=object())
    with pytest.raises(ConfigError, match="audit"):
        Executor(audit=AuditLog)  # the class, not an instance
    with pytest.raises(ConfigError, match="max_bytes"):
        AuditLog(tmp_path / "a.jsonl", max_bytes=0)
    with pytest.raises(ConfigError, match="backups"):
        AuditLog(tmp_path / "a.jsonl", backups=-1)
    assert isinstance(Ports().audit, object)  # the default audit port stays a no-op
