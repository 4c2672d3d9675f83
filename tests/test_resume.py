"""Checkpoint and resume: a run its process left unfinished goes on from its store, every step once.

The pure rebuild (``resume_point``) is read from real logs cut at each event; in-process resumes start
from those cut logs in a store; the real one kills a subprocess with SIGKILL while its tools run (or
while it waits for an approval) and resumes the run here.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from executus_nb import Agent, Executor, MemoryStore, Policy, RunResult, RunStatus, SQLiteStore, sim, tool
from executus_nb.errors import ConfigError, ToolRegistrationError, UserError
from executus_nb.run.resume import UNKNOWN_AFTER_CRASH, resume_point
from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from tests.waiting import WAIT, wait_until

SCRIPT = [
    sim.call("lookup", q="weather"),
    sim.calls(sim.call("fetch_page", url="https://example.org"), sim.call("send_email", to="ann")),
    sim.reply("done"),
]


class Tools:
    """The agent's tools, counting their calls in this process (``fetch_page`` is idempotent)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

        @tool
        def lookup(q: str) -> str:
            """Look something up."""
            self.calls["lookup"] += 1
            return f"sunny ({q})"

        @tool(idempotent=True)
        def fetch_page(url: str) -> str:
            """Fetch a page (reading twice does no harm)."""
            self.calls["fetch_page"] += 1
            return f"<html>{url}</html>"

        @tool
        def send_email(to: str) -> str:
            """Send an email (twice would be two emails)."""
            self.calls["send_email"] += 1
            return f"sent to {to}"

        self.agent = Agent(name="mailer", tools=[lookup, fetch_page, send_email], model=sim.scripted(SCRIPT))


@pytest.fixture(scope="module")
def full_log() -> list:
    """The events of one whole run of the script (model, lookup, model, fetch_page + send_email, model)."""
    store = MemoryStore()
    tools = Tools()
    result = Executor(store=store).run(tools.agent, "mail ann the weather", run_id="whole").wait(WAIT, quiet=True)
    assert result.output == "done"
    return store.events("whole")


def _finished_per_step(events) -> dict[int, int]:
    counts: collections.Counter[int] = collections.Counter()
    for ev in events:
        if isinstance(ev, (ModelCallFinished, ToolCallFinished)):
            counts[ev.step] += 1
    return dict(counts)


def _started_steps(events) -> set[int]:
    return {ev.step for ev in events if isinstance(ev, (ModelCallStarted, ToolCallStarted))}


def _assert_every_step_once(events) -> None:
    assert [ev.seq for ev in events] == list(range(len(events)))
    assert sum(isinstance(ev, RunStarted) for ev in events) == 1
    assert sum(isinstance(ev, RunFinished) for ev in events) == 1 and isinstance(events[-1], RunFinished)
    finished = _finished_per_step(events)
    assert set(finished) == _started_steps(events)
    assert set(finished.values()) == {1}, finished


# -- the pure rebuild ----------------------------------------------------------------------
def test_rebuild_while_two_tools_run_names_them_open_with_their_decisions(full_log):
    cut = next(i for i, ev in enumerate(full_log) if isinstance(ev, ToolCallStarted) and ev.name == "send_email")
    # every event up to send_email's approval: fetch_page and send_email both allowed, neither finished
    end = next(i for i, ev in enumerate(full_log) if isinstance(ev, ApprovalResolved) and ev.name == "send_email")
    assert end > cut
    point = resume_point(full_log[: end + 1])
    assert not point.finished
    assert point.turns_done == 2 and point.model_calls == 2
    assert point.next_step == 6  # model 1, lookup 2, model 3, fetch_page 4, send_email 5
    assert [(c.step, c.name, c.may_have_run) for c in point.open_tools] == [
        (4, "fetch_page", True),
        (5, "send_email", True),
    ]
    answers = [ev.usage for ev in full_log[:end] if isinstance(ev, ModelCallFinished)]
    assert len(answers) == 2 and point.usage == answers[0] + answers[1]
    assert point.messages[-1]["role"] == "assistant" and len(point.messages[-1]["tool_calls"]) == 2
    assert point.messages[point.answer_at] is point.messages[-1]
    assert not point.cut_models and not point.unstarted and not point.pending_approvals


def test_rebuild_after_a_step_is_the_conversation_so_far_and_nothing_open(full_log):
    lookup_done = next(i for i, ev in enumerate(full_log) if isinstance(ev, ToolCallFinished))
    point = resume_point(full_log[: lookup_done + 1])
    roles = [m["role"] for m in point.messages]
    assert roles == ["user", "assistant", "tool"]
    assert point.messages[-1]["content"] == "sunny (weather)"
    assert point.turns_done == 1 and point.next_step == 3 and not point.interrupted


def test_rebuild_of_a_model_call_in_flight_closes_it_and_goes_on_at_its_turn(full_log):
    second_call = [i for i, ev in enumerate(full_log) if isinstance(ev, ModelCallStarted)][1]
    point = resume_point(full_log[: second_call + 1])
    assert [(ev.step, ev.turn) for ev in point.cut_models] == [(3, 2)]
    assert point.turns_done == 1 and point.model_calls == 1 and point.next_step == 4


def test_rebuild_of_tool_calls_not_started_yet_lists_them(full_log):
    answer = [i for i, ev in enumerate(full_log) if isinstance(ev, ModelCallFinished)][1]
    point = resume_point(full_log[: answer + 1])
    assert [tc["function"]["name"] for tc in point.unstarted] == ["fetch_page", "send_email"]
    assert not point.open_tools and point.interrupted


def test_rebuild_of_a_finished_run_is_finished_with_nothing_open(full_log):
    point = resume_point(full_log)
    assert point.finished and not point.interrupted and not point.cut_models


def test_rebuild_refuses_a_log_with_a_gap_or_without_its_start(full_log):
    with pytest.raises(UserError, match="gap"):
        resume_point([full_log[0], *full_log[2:5]])
    with pytest.raises(UserError, match="RunStarted"):
        resume_point(full_log[1:4])


# -- resuming in process, from a log cut at every event -------------------------------------
def _expected_calls(prefix) -> collections.Counter[str]:
    """How often each tool must run in the resuming process for a run cut after ``prefix``."""
    started = {ev.step: ev.name for ev in prefix if isinstance(ev, ToolCallStarted)}
    done = {ev.step for ev in prefix if isinstance(ev, ToolCallFinished)}
    allowed = {ev.step for ev in prefix if isinstance(ev, ApprovalResolved) and ev.decision == "allow"}
    expected: collections.Counter[str] = collections.Counter()
    for step, name in {2: "lookup", 4: "fetch_page", 5: "send_email"}.items():
        if step in done:
            continue
        if step in started and step in allowed and name != "fetch_page":
            continue  # it may have run: not run again, reported unknown
        expected[name] += 1
    return expected


def _unknown(prefix) -> list[str]:
    """The tools a run cut after ``prefix`` reports as unknown: allowed, unfinished and not idempotent."""
    done = {ev.step for ev in prefix if isinstance(ev, ToolCallFinished)}
    allowed = {ev.call_id for ev in prefix if isinstance(ev, ApprovalResolved) and ev.decision == "allow"}
    return [
        ev.name
        for ev in prefix
        if isinstance(ev, ToolCallStarted) and ev.step not in done and ev.call_id in allowed and ev.name != "fetch_page"
    ]


def test_a_run_cut_after_any_event_resumes_to_the_same_answer_with_every_step_once(full_log):
    for cut in range(1, len(full_log) - 1):  # every prefix that has started and not finished
        prefix = full_log[:cut]
        store = MemoryStore()
        store.append(prefix)
        tools = Tools()
        run = Executor(store=store).resume("whole", tools.agent)
        result = run.wait(timeout=WAIT, quiet=True)
        events = store.events("whole")
        assert result.status is RunStatus.SUCCEEDED and result.output == "done", (cut, result)
        assert run.run_id == "whole" and events == run.log.events and events[:cut] == prefix
        _assert_every_step_once(events)
        assert tools.calls == _expected_calls(prefix), cut
        unknown = [
            ev
            for ev in events
            if isinstance(ev, ToolCallFinished) and ev.error and ev.error.type == UNKNOWN_AFTER_CRASH
        ]
        assert [ev.name for ev in unknown] == _unknown(prefix), cut
        assert sum(1 for ev in events if isinstance(ev, ModelCallFinished) and ev.error is None) == 3


def test_a_resumed_run_cut_again_resumes_again_with_every_step_once(full_log):
    first_cut = next(i for i, ev in enumerate(full_log) if isinstance(ev, ApprovalResolved) and ev.name == "send_email")
    store = MemoryStore()
    store.append(full_log[: first_cut + 1])
    Executor(store=store).resume("whole", Tools().agent).wait(timeout=WAIT, quiet=True)
    twice = store.events("whole")  # two processes' events in one log
    for cut in range(first_cut + 2, len(twice) - 1):  # cut again after the first resume had begun
        again = MemoryStore()
        again.append(twice[:cut])
        tools = Tools()
        result = Executor(store=again).resume("whole", tools.agent).wait(timeout=WAIT, quiet=True)
        assert result.output == "done", cut
        events = again.events("whole")
        _assert_every_step_once(events)
        assert tools.calls == _expected_calls(twice[:cut]), cut
        assert sum(isinstance(ev, ModelCallFinished) and ev.error is None for ev in events) == 3


def test_the_model_is_told_a_cut_tool_result_is_unknown_and_an_idempotent_one_ran_again(full_log):
    end = next(i for i, ev in enumerate(full_log) if isinstance(ev, ApprovalResolved) and ev.name == "send_email")
    store = MemoryStore()
    store.append(full_log[: end + 1])
    tools = Tools()
    run = Executor(store=store).resume("whole", tools.agent)
    result = run.wait(timeout=WAIT, quiet=True)
    assert tools.calls == {"fetch_page": 1}
    tool_messages = {m["tool_call_id"]: m["content"] for m in result.messages if m["role"] == "tool"}
    ids = {ev.name: ev.call_id for ev in full_log if isinstance(ev, ToolCallStarted)}
    assert tool_messages[ids["fetch_page"]] == "<html>https://example.org</html>"
    assert tool_messages[ids["send_email"]].startswith(f"Error: {UNKNOWN_AFTER_CRASH}: ")
    assert "not run again" in tool_messages[ids["send_email"]]
    rows = run.tool_calls_df().set_index("tool")
    assert rows.loc["send_email", "error_type"] == UNKNOWN_AFTER_CRASH and not rows.loc["send_email", "ok"]
    assert rows.loc["fetch_page", "ok"] and rows.loc["lookup", "ok"]


def test_resuming_a_finished_run_gives_its_result_at_once(full_log):
    store = MemoryStore()
    store.append(full_log)
    tools = Tools()
    run = Executor(store=store).resume("whole", tools.agent)
    assert run.done and run.result is not None
    assert run.wait(timeout=1, quiet=True).output == "done"
    assert run.result == RunResult.from_events(full_log) and len(run.result.steps) == 6
    assert store.events("whole") == full_log and not tools.calls


def test_tools_are_not_idempotent_unless_marked():
    assert Tools().agent.tools[1].idempotent and not Tools().agent.tools[2].idempotent

    def ping() -> str:
        """Ping."""
        return "pong"

    assert not tool(ping).idempotent and tool(idempotent=True)(ping).idempotent
    with pytest.raises(ToolRegistrationError, match="idempotent"):
        tool(idempotent="yes")(ping)  # type: ignore[arg-type]


def test_resume_needs_a_store_and_a_stored_run():
    agent = Tools().agent
    with pytest.raises(ConfigError, match="store"):
        Executor().resume("nope", agent)
    with pytest.raises(UserError, match="not in the store"):
        Executor(store=MemoryStore()).resume("nope", agent)
    with pytest.raises(UserError, match="Agent"):
        Executor(store=MemoryStore()).resume("nope", "agent")  # type: ignore[arg-type]


def test_an_approval_pending_at_the_crash_is_pending_again_and_approve_finishes_it():
    @tool(permission="ask")
    def publish(text: str) -> str:
        """Publish a text."""
        published.append(text)
        return f"published {text!r}"

    published: list[str] = []
    agent = Agent(name="writer", tools=[publish], model=sim.scripted([sim.call("publish", text="hi"), sim.reply("ok")]))
    policy = Policy(approver="code", ask_timeout_s=600)
    first = MemoryStore()
    run = Executor(store=first, policy=policy).run(agent, "go", run_id="ask")
    asked = run.wait_for_approval(timeout=WAIT)
    assert asked is not None
    prefix = first.events("ask")  # the process "dies" here, its approval unanswered
    run.cancel()
    assert isinstance(prefix[-1], ApprovalRequested)

    store = MemoryStore()
    store.append(prefix)
    resumed = Executor(store=store, policy=policy).resume("ask", agent)
    view = resumed.view()  # the RunView of the resumed run shows the question's buttons again
    again = resumed.wait_for_approval(timeout=WAIT)
    assert again is not None and again.call_id == asked.call_id and again.name == "publish"
    assert resumed.approvals.waiting() and not resumed.done

    def buttons() -> list[str]:
        rows = view._extras.children  # each: the question, then a box of its buttons
        return [b.description for row in rows for box in row.children[1:] for b in box.children]

    wait_until(lambda: "Approve" in buttons(), timeout=WAIT)
    resumed.approve()
    result = resumed.wait(timeout=WAIT, quiet=True)
    assert result.output == "ok" and published == ["hi"]
    events = store.events("ask")
    _assert_every_step_once(events)
    # asked before the crash and again by the resumed run (so its views show the question), answered once
    assert [ev.call_id for ev in events if isinstance(ev, ApprovalRequested)] == [asked.call_id] * 2
    assert [(ev.decision, ev.by) for ev in events if isinstance(ev, ApprovalResolved)] == [("allow", "user")]


# -- checkpointing -------------------------------------------------------------------------
class FlushOnlyStore(MemoryStore):
    """An ``EventStore`` that writes only when flushed: ``durable`` is what a crash would leave."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list = []
        self.durable: list = []
        self.lock = threading.Lock()

    def append(self, events) -> None:
        with self.lock:
            self.queued.extend(events)

    def flush(self, timeout: float | None = None) -> None:
        with self.lock:
            written, self.queued = self.queued, []
            self.durable.extend(written)
        super().append(written)


def test_each_step_is_written_before_the_next_model_call_and_each_tool_call_before_the_tool_acts():
    store = FlushOnlyStore()
    seen: dict[str, list[str]] = {}

    def kinds() -> list[str]:
        return [ev.kind for ev in list(store.durable)]

    def model(messages, tools):
        seen[f"model call {sum(key.startswith('model') for key in seen) + 1}"] = kinds()
        return sim.call("lookup", q="x") if len(messages) < 3 else sim.reply("done")

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        seen["tool"] = kinds()
        return "found"

    agent = Agent(name="cp", tools=[lookup], model=sim.function(model, name="checkpointed"))
    result = Executor(store=store).run(agent, "go", run_id="cp").wait(timeout=WAIT, quiet=True)
    assert result.output == "done"
    assert seen["model call 1"] == ["run_started"]  # the call in flight is not yet written (nor needs to be)
    # the tool acts only once its call and its decision are written
    assert seen["tool"][-2:] == ["tool_call_started", "approval_resolved"]
    # the second call is made only once the first step (its answer, its tool call and result) is written
    assert seen["model call 2"] == [
        "run_started",
        "model_call_started",
        "model_call_finished",
        "tool_call_started",
        "approval_resolved",
        "tool_call_finished",
    ]
    assert kinds()[-1] == "run_finished"  # and the end is written before the run's result is given


# -- the real thing: SIGKILL a process mid-run, resume it here ------------------------------
CHILD = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from executus_nb import Agent, Executor, Policy, SQLiteStore, sim, tool

    db, signals, mode = sys.argv[1:]
    hold = threading.Event()  # never set: a tool holds here until the process is killed

    @tool
    def lookup(q: str) -> str:
        "Look something up."
        return f"sunny ({q})"

    @tool(idempotent=True)
    def fetch_page(url: str) -> str:
        "Fetch a page."
        Path(signals, "fetch_page").touch()
        hold.wait()

    @tool
    def send_email(to: str) -> str:
        "Send an email."
        Path(signals, "send_email").touch()
        hold.wait()

    @tool(permission="ask")
    def publish(text: str) -> str:
        "Publish a text."
        return "published"

    if mode == "tools":
        turns = [
            sim.call("lookup", q="weather"),
            sim.calls(sim.call("fetch_page", url="https://example.org"), sim.call("send_email", to="ann")),
            sim.reply("done"),
        ]
        agent = Agent(name="mailer", tools=[lookup, fetch_page, send_email], model=sim.scripted(turns))
    else:
        turns = [sim.call("lookup", q="x"), sim.call("publish", text="hi"), sim.reply("ok")]
        agent = Agent(name="writer", tools=[lookup, publish], model=sim.scripted(turns))
    executor = Executor(store=SQLiteStore(db), policy=Policy(approver="code", ask_timeout_s=600))
    run = executor.run(agent, "go", run_id="killed")
    if mode == "approval":
        run.wait_for_approval(timeout=120)
        executor.store.flush()  # the question is on disk (else the resumed run asks it for the first time)
        Path(signals, "asked").touch()
    hold.wait()
    """
)


def _killed_mid_run(tmp_path: Path, mode: str, signals: tuple[str, ...], db: Path) -> None:
    """Run the child until every signal file exists, then SIGKILL it (no clean-up, no flush at exit)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(tmp_path), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: all((tmp_path / s).exists() for s in signals) or proc.poll() is not None, timeout=WAIT)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=WAIT)
    assert proc.returncode == -signal.SIGKILL


def test_a_run_killed_with_sigkill_while_its_tools_run_resumes_here_with_every_step_once(tmp_path):
    db = tmp_path / "runs.db"
    _killed_mid_run(tmp_path, "tools", ("fetch_page", "send_email"), db)
    store = SQLiteStore(db)
    before = store.events("killed")
    assert not isinstance(before[-1], RunFinished)
    assert {ev.name for ev in before if isinstance(ev, ApprovalResolved)} == {"lookup", "fetch_page", "send_email"}

    tools = Tools()
    executor = Executor(store=store)
    result = executor.resume("killed", tools.agent).wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.SUCCEEDED and result.output == "done"
    assert tools.calls == {"fetch_page": 1}  # lookup finished before the kill; send_email is not sent twice
    executor.close()
    events = SQLiteStore(db).events("killed")
    assert events[: len(before)] == before
    _assert_every_step_once(events)
    finished = {ev.name: ev for ev in events if isinstance(ev, ToolCallFinished)}
    assert finished["send_email"].error is not None and finished["send_email"].error.type == UNKNOWN_AFTER_CRASH
    assert finished["fetch_page"].error is None and finished["lookup"].error is None
    assert executor.runs_df().set_index("run_id").loc["killed", "status"] == "succeeded"


def test_a_run_killed_while_waiting_for_approval_waits_again_and_approve_finishes_it(tmp_path):
    db = tmp_path / "runs.db"
    _killed_mid_run(tmp_path, "approval", ("asked",), db)
    store = SQLiteStore(db)
    before = store.events("killed")
    assert isinstance(before[-1], ApprovalRequested) and before[-1].name == "publish"

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        raise AssertionError("lookup finished before the kill: it must not run again")

    done = threading.Event()

    @tool(permission="ask")
    def publish(text: str) -> str:
        """Publish a text."""
        done.set()
        return "published"

    agent = Agent(
        name="writer",
        tools=[lookup, publish],
        model=sim.scripted([sim.call("lookup", q="x"), sim.call("publish", text="hi"), sim.reply("ok")]),
    )
    executor = Executor(store=store, policy=Policy(approver="code", ask_timeout_s=600))
    run = executor.resume("killed", agent)
    asked = run.wait_for_approval(timeout=WAIT)
    assert asked is not None and asked.name == "publish" and run.approvals.waiting()
    run.approve()
    result = run.wait(timeout=WAIT, quiet=True)
    assert result.output == "ok" and done.is_set()
    executor.close()
    events = SQLiteStore(db).events("killed")
    _assert_every_step_once(events)
    assert sum(isinstance(ev, ApprovalRequested) for ev in events) == 2  # asked, then asked again after the kill
    assert all(ev.error is None for ev in events if isinstance(ev, ToolCallFinished))  # lookup was not run again
