"""Approvals answered from code in a script: Policy(approver="code"), pending_approvals, wait_for_approval."""

from __future__ import annotations

import threading
import time

import pytest

from executus_nb import Agent, ConfigError, Executor, RunStatus, sim, tool
from executus_nb.errors import NoPendingApproval, UserError
from executus_nb.tool.policy import Policy


@tool(permission="ask")
def publish(text: str) -> str:
    """Publish a text."""
    return f"published {text!r}"


def _run(policy: Policy, *texts: str):
    turns = [sim.call("publish", text=t) for t in texts] + [sim.reply("done")]
    agent = Agent(name="writer", tools=[publish], model=sim.scripted(turns))
    return Executor(policy=policy).run(agent, "go")


def _poll_pending(run, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = run.pending_approvals
        if pending:
            return pending[0]
        time.sleep(0.005)
    raise AssertionError("nothing asked for approval")


@pytest.mark.parametrize(("how", "decision", "result"), [("approve", "allow", "published 'a'"), ("deny", "deny", None)])
def test_another_thread_answers_by_polling_pending(how, decision, result):
    run = _run(Policy(approver="code", ask_timeout_s=60), "a")
    seen = []

    def answer():
        request = _poll_pending(run)
        seen.append(request)
        getattr(run, how)(request.call_id)

    t = threading.Thread(target=answer)
    t.start()
    finished = run.wait(timeout=60, quiet=True)
    t.join(30)
    (request,) = seen
    assert (request.name, request.tool, request.arguments) == ("publish", "publish", {"text": "a"})
    assert request.rule == "tool default (ask)" and request.call_id
    assert finished.status is RunStatus.SUCCEEDED
    row = run.tool_calls_df().iloc[0]
    assert (row.decision, row.decided_by) == (decision, "user")
    if result is not None:
        assert row.result == result
    else:
        assert not row.ok and "denied" in row.result
    assert run.pending_approvals == []


def test_wait_for_approval_returns_each_request_then_none_when_the_run_ends():
    run = _run(Policy(approver="code", ask_timeout_s=60), "a", "b")
    names = []
    while (request := run.wait_for_approval(timeout=30)) is not None:
        names.append(request.arguments["text"])
        run.approve(request.call_id)
    assert names == ["a", "b"]
    assert run.wait(timeout=30, quiet=True).ok
    assert list(run.tool_calls_df().decision) == ["allow", "allow"]


def test_unanswered_ask_is_denied_after_ask_timeout_s():
    run = _run(Policy(approver="code", ask_timeout_s=0.5), "a")
    request = run.wait_for_approval(timeout=30)
    asked = time.monotonic()
    assert request is not None and run.pending_approvals == [request]
    result = run.wait(timeout=60, quiet=True)
    waited = time.monotonic() - asked
    row = run.tool_calls_df().iloc[0]
    assert (row.decision, row.decided_by, row.ok) == ("deny", "timeout (0.5 s)", False)
    assert result.status is RunStatus.SUCCEEDED
    assert 0.3 <= waited < 30  # denied after ask_timeout_s (measured from when the request was seen), not never
    with pytest.raises(NoPendingApproval):
        run.approve(request.call_id)  # too late: denied already


def test_approve_or_deny_with_nothing_pending_raises():
    held = threading.Event()  # the model's first answer (the call to approve) waits until approve() was tried

    def model(messages, tools):
        if len(messages) == 1:
            assert held.wait(30)
            return sim.call("publish", text="a")
        return sim.reply("done")

    agent = Agent(name="writer", tools=[publish], model=sim.function(model))
    run = Executor(policy=Policy(approver="code", ask_timeout_s=60)).run(agent, "go")
    try:
        with pytest.raises(NoPendingApproval, match="wait_for_approval"):
            run.approve()  # before the request exists: an error, not a silent False
    finally:
        held.set()
    request = run.wait_for_approval(timeout=30)
    with pytest.raises(NoPendingApproval, match="'nope'"):
        run.deny("nope")
    assert run.approve(request.call_id) is True
    with pytest.raises(NoPendingApproval):
        run.deny(request.call_id)  # answered already
    run.wait(timeout=30, quiet=True)
    with pytest.raises(NoPendingApproval, match="finished"):
        run.deny()
    assert issubclass(NoPendingApproval, UserError)


def test_wait_for_approval_times_out_when_nothing_asks():
    run = Executor().run(Agent(name="free", model=sim.scripted([sim.reply("hi")], latency_s=5)), "go")
    with pytest.raises(TimeoutError):
        run.wait_for_approval(timeout=0.2)
    run.cancel()
    run.wait(timeout=30, quiet=True)


def test_headless_default_still_denies_at_once_and_says_how_to_answer_from_code():
    run = _run(Policy(ask_timeout_s=60), "a")
    run.wait(timeout=30, quiet=True)
    row = run.tool_calls_df().iloc[0]
    assert row.decision == "deny" and "approver='code'" in row.decided_by


def test_approver_code_is_read_from_dicts_and_conflicts_with_on_ask():
    assert Policy.from_dict({"approver": "code", "rules": [{"action": "ask", "tool": "x"}]}).approver == "code"
    with pytest.raises(ConfigError, match="approver"):
        Policy(approver="person")
    with pytest.raises(ConfigError, match="on_ask"):
        Policy(approver="code", on_ask=lambda request: True)
