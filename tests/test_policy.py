"""Permissions: rule matching and order, loading from TOML/YAML, and the ask flow (on_ask, people, timeouts)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from executus_nb import Agent, ConfigError, Executor, RunStatus, sim, tool
from executus_nb.tool.policy import Policy
from executus_nb.types.gate import ToolCallRequest


def req(name="web_fetch", agent="researcher", default=None, **arguments) -> ToolCallRequest:
    return ToolCallRequest(
        run_id="r",
        agent=agent,
        step=1,
        call_id="c1",
        name=name,
        arguments=arguments,
        raw_arguments="{}",
        default_permission=default,
    )


WIKI = (
    Policy()
    .allow("web_fetch", host="*.wikipedia.org")
    .ask("web_fetch")
    .ask("write_file")
    .deny("delete_*")
    .deny("*", agent="intern")
    .allow("search", args={"query": "weather *"})
    .deny("search")
)


@pytest.mark.parametrize(
    ("request_", "action", "rule"),
    [
        (req(url="https://en.wikipedia.org/wiki/Lisbon"), "allow", "allow web_fetch host=*.wikipedia.org"),
        (req(url="https://EN.Wikipedia.org./wiki/Oslo"), "allow", "allow web_fetch host=*.wikipedia.org"),
        (req(url="https://evil.example/?x=.wikipedia.org/"), "ask", "ask web_fetch"),
        (req(url="https://en.wikipedia.org.evil.example/"), "ask", "ask web_fetch"),
        (req(url="https://user@en.wikipedia.org@evil.example/"), "ask", "ask web_fetch"),
        (req(url=12), "ask", "ask web_fetch"),
        (req("write_file", path="a.txt"), "ask", "ask write_file"),
        (req("delete_everything"), "deny", "deny delete_*"),
        (req("calculator", agent="intern"), "deny", "deny * agent=intern"),
        (req("calculator"), "allow", "policy default (allow)"),
        (req("search", query="weather in Oslo"), "allow", "allow search query=weather *"),
        (req("search", query="stock prices"), "deny", "deny search"),
        (req("publish", default="ask"), "ask", "tool default (ask)"),
        (req("delete_file", default="allow"), "deny", "deny delete_*"),
    ],
    ids=[
        "host-match",
        "host-case-and-dot",
        "host-in-query",
        "host-suffix-trick",
        "userinfo-trick",
        "non-string-url",
        "write-asks",
        "delete-glob-denies",
        "agent-rule",
        "default-allow",
        "arg-glob-allows",
        "arg-glob-falls-through",
        "tool-default",
        "rule-beats-tool-default",
    ],
)
def test_first_matching_rule_wins(request_, action, rule):
    assert WIKI.evaluate(request_) == (action, rule)


def test_when_predicate_and_default_deny():
    policy = Policy(default="deny").allow("transfer", when=lambda a: a.get("amount", 0) <= 100, name="small transfers")
    assert policy.evaluate(req("transfer", amount=50)) == ("allow", "small transfers")
    assert policy.evaluate(req("transfer", amount=5000)) == ("deny", "policy default (deny)")


TOML = """
default = "allow"
ask_timeout_s = 30

[[rules]]
action = "allow"
tool = "web_fetch"
host = "*.wikipedia.org"

[[rules]]
action = "ask"
tool = "web_fetch"

[[rules]]
action = "deny"
tool = "delete_*"
"""

YAML = """
default: deny
rules:
  - {action: allow, tool: calculator}
  - {action: ask, tool: write_file}
"""


def test_policy_from_toml_and_yaml(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(TOML)
    for policy in (Policy.from_toml(TOML), Policy.from_toml(path)):
        assert policy.ask_timeout_s == 30
        assert policy.evaluate(req(url="https://de.wikipedia.org/")) == (
            "allow",
            "allow web_fetch host=*.wikipedia.org",
        )
        assert policy.evaluate(req(url="https://example.com/"))[0] == "ask"
        assert policy.evaluate(req("delete_x"))[0] == "deny"
    policy = Policy.from_yaml(YAML)
    assert policy.evaluate(req("calculator"))[0] == "allow"
    assert policy.evaluate(req("other")) == ("deny", "policy default (deny)")


@pytest.mark.parametrize(
    "source",
    [
        'default = "maybe"',
        "[[rules]]\ntool = 'x'",
        "[[rules]]\naction = 'allow'\ncolour = 'red'",
        "unknown_key = 1",
        "[[rules]\naction='allow'",
        '[[rules]]\naction = "perhaps"',
    ],
    ids=["bad-default", "rule-without-action", "unknown-rule-key", "unknown-top-key", "bad-toml", "bad-action"],
)
def test_bad_policy_config_is_a_clear_error(source):
    with pytest.raises(ConfigError):
        Policy.from_toml(source)


# -- the ask flow in runs ----------------------------------------------------------------


@tool
def write_note(text: str) -> str:
    """Write a note."""
    return f"wrote {text!r}"


@tool(permission="ask")
def publish(text: str) -> str:
    """Publish a note."""
    return f"published {text!r}"


def _agent(tools, calls, name="writer"):
    return Agent(name=name, tools=tools, model=sim.scripted(calls + [sim.reply("done")]))


def test_deny_rule_never_runs_tool_and_model_sees_refusal():
    ran = []

    @tool
    def delete_all() -> str:
        """Delete everything."""
        ran.append(1)
        return "deleted"

    ex = Executor(policy=Policy().deny("delete_*"))
    run = ex.run(_agent([delete_all], [sim.call("delete_all")]), "go")
    result = run.wait(quiet=True)
    assert result.status is RunStatus.SUCCEEDED and ran == []
    row = run.tool_calls_df().iloc[0]
    assert (row.ok, row.error_type, row.decision, row.decided_by, row.rule) == (
        False,
        "ToolDenied",
        "deny",
        "policy",
        "deny delete_*",
    )
    assert "denied" in row.result


@pytest.mark.parametrize("answer", [True, "allow", False, "deny"], ids=["true", "allow", "false", "deny"])
def test_on_ask_callback_decides_sync_and_async(answer):
    asked = []

    async def on_ask(request):
        asked.append((request.name, request.arguments))
        return answer

    for callback in (on_ask, lambda r: asked.append((r.name, r.arguments)) or answer):
        asked.clear()
        ex = Executor(policy=Policy(on_ask=callback).ask("write_note"))
        run = ex.run(_agent([write_note], [sim.call("write_note", text="hi")]), "go")
        run.wait(quiet=True)
        row = run.tool_calls_df().iloc[0]
        allowed = answer in (True, "allow")
        assert asked == [("write_note", {"text": "hi"})]
        assert (row.decision, row.decided_by, bool(row.ok)) == ("allow" if allowed else "deny", "on_ask", allowed)
        kinds = [e.kind for e in run.events]
        assert kinds.index("approval_requested") < kinds.index("approval_resolved") < kinds.index("tool_call_finished")


def test_headless_ask_without_callback_denies_by_default():
    run = Executor().run(_agent([publish], [sim.call("publish", text="x")]), "go")
    run.wait(quiet=True)
    row = run.tool_calls_df().iloc[0]
    assert (row.decision, row.rule, row.ok) == ("deny", "tool default (ask)", False)
    assert row.decided_by.startswith("no approver")


@pytest.fixture
def interactive(monkeypatch):
    monkeypatch.setattr("executus_nb.run.executor.in_notebook", lambda: True)


async def _until_waiting(run, n=1):
    while len(run.approvals.waiting()) < n:
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("how", ["approve", "deny", "always"])
def test_person_answers_from_another_thread(interactive, how):
    calls = [sim.call("publish", text="a"), sim.call("publish", text="b")]

    async def main():
        run = Executor().run(_agent([publish], calls), "go")
        await _until_waiting(run)
        answer = {
            "approve": lambda: run.approve(),
            "deny": lambda: run.deny(),
            "always": lambda: run.approve(always=True),
        }[how]
        t = threading.Thread(target=answer)
        t.start()
        t.join()
        if how != "always":  # the second call asks again
            await _until_waiting(run)
            run.approve()
        return await run, run

    result, run = asyncio.run(main())
    df = run.tool_calls_df()
    first = {"approve": ("allow", "user"), "deny": ("deny", "user"), "always": ("allow", "user")}[how]
    second = ("allow", "always-allow") if how == "always" else ("allow", "user")
    assert tuple(df.iloc[0][["decision", "decided_by"]]) == first
    assert tuple(df.iloc[1][["decision", "decided_by"]]) == second
    assert result.status is RunStatus.SUCCEEDED


def test_unanswered_ask_times_out_as_deny_and_others_stay_responsive(interactive):
    async def main():
        ex = Executor(policy=Policy(ask_timeout_s=0.3))
        waiting = ex.run(_agent([publish], [sim.call("publish", text="a")]), "go")
        other = ex.run(Agent(name="other", model=sim.scripted([sim.reply("free")])), "go")
        started = time.monotonic()
        other_result = await other
        other_done = time.monotonic() - started
        return await waiting, waiting, other_result, other_done

    result, run, other_result, other_done = asyncio.run(main())
    assert other_result.output == "free" and other_done < 0.3
    row = run.tool_calls_df().iloc[0]
    assert (row.decision, row.decided_by, row.ok) == ("deny", "timeout (0.3 s)", False)
    assert result.status is RunStatus.SUCCEEDED


def test_approval_buttons_in_runview(interactive):
    async def main():
        run = Executor().run(_agent([publish], [sim.call("publish", text="a")]), "go")
        view = run.view()
        await _until_waiting(run)
        await asyncio.sleep(0)
        row = view._extras.children
        assert len(row) == 1
        buttons = {tuple(b._dom_classes)[0]: b for b in row[0].children[1].children}
        assert set(buttons) == {"executus-approve", "executus-deny", "executus-always"}
        assert "publish" in row[0].children[0].value
        threading.Thread(target=buttons["executus-approve"].click).start()
        result = await run
        return result, run, view

    result, run, view = asyncio.run(main())
    assert run.tool_calls_df().iloc[0].decided_by == "user"
    assert result.steps[1].result == "published 'a'"
    assert view._extras.children == ()


IPV4_SPELLINGS = [
    "http://10.0.0.5/",
    "http://012.0.0.5/",
    "http://[::ffff:10.0.0.5]/",
    "http://[::ffff:a00:5]/",
    "http://[64:ff9b::a00:5]/",
    "http://[2002:a00:5::1]/",
    "http://[::ffff:0:a00:5]/",
]


@pytest.mark.parametrize("pattern", ["10.0.0.5", "10.0.*", "[::ffff:10.0.0.5]"])
@pytest.mark.parametrize("url", IPV4_SPELLINGS)
def test_a_host_rule_on_an_ipv4_address_covers_its_ipv6_forms(pattern, url):
    # the SSRF guard judges these by the IPv4 they embed, so a host rule must too
    policy = Policy().deny("web_fetch", host=pattern)
    assert policy.evaluate(req(url=url))[0] == "deny"
    assert policy.evaluate(req(url="http://[::ffff:10.1.0.6]/"))[0] == "allow"  # another address
    assert Policy(default="deny").allow("web_fetch", host=pattern).evaluate(req(url=url))[0] == "allow"
