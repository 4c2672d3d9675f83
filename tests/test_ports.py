"""Host ports as named slots on the hook mechanism: each called at its point, each replaceable by the user's own."""

from __future__ import annotations

import pytest

from executus_nb import Agent, ConfigError, Executor, Policy, RunResult, RunStatus, StopRun, ToolError, sim, tool
from executus_nb.run.log import RunLog
from executus_nb.run.ports import NO_BUDGET, Ports
from executus_nb.run.review import review_hook
from executus_nb.types.events import ApprovalResolved, MessagesRewritten, RevisionRequested, ToolCallFinished

WAIT = 120  # a guard against hanging, not a speed bound

ran: list[str] = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    ran.append("add")
    return a + b


@tool
def wipe() -> str:
    """Delete everything."""
    ran.append("wipe")
    return "wiped"


def run(executor: Executor, agent: Agent, **kw) -> tuple[RunResult, list]:
    handle = executor.run(agent, "go", **kw)
    return handle.wait(WAIT, quiet=True), handle.events


def tool_names(tools: list[dict]) -> list[str]:
    return sorted(t["function"]["name"] for t in tools)


# -- each slot at its point ------------------------------------------------------------------


class OneRevision:
    """A Critic that asks for one revision, then accepts."""

    def __init__(self) -> None:
        self.reviewed: list = []

    def review(self, ctx, output):
        self.reviewed.append(output)
        return "Shorter, please." if len(self.reviewed) == 1 else None


def test_a_critic_asks_for_one_revision_and_the_run_ends_with_the_revised_output():
    critic = OneRevision()
    model = sim.scripted([sim.reply("a long first answer"), sim.reply("short")], name="critic-two-answers")
    with Executor(ports=Ports(critic=critic)) as executor:
        result, events = run(executor, Agent(model=model))
    assert result.status is RunStatus.SUCCEEDED and result.output == "short"
    assert critic.reviewed == ["a long first answer", "short"]
    (revision,) = [ev for ev in events if isinstance(ev, RevisionRequested)]
    assert (revision.output, revision.feedback) == ("a long first answer", "Shorter, please.")


class NoWipe:
    """A PaletteSource that hides the destructive tool."""

    def __init__(self) -> None:
        self.offered: list[list[str]] = []

    async def offer(self, ctx, tools):
        self.offered.append(tool_names(tools))
        return [t for t in tools if t["function"]["name"] != "wipe"]


def test_a_palette_hides_a_tool_from_the_request_and_a_call_to_it_does_not_run():
    ran.clear()
    seen: list[list[str]] = []

    def model(messages, tools):
        seen.append(tool_names(tools))
        return sim.call("wipe") if len(seen) == 1 else sim.reply("done")

    palette = NoWipe()
    with Executor(ports=Ports(palette=palette)) as executor:
        result, events = run(executor, Agent(tools=[add, wipe], model=sim.function(model, name="palette-model")))
    assert result.ok
    assert seen == [["add"], ["add"]]  # the request never offered wipe
    assert palette.offered == [["add", "wipe"], ["add", "wipe"]]  # the palette chose from the agent's tools
    assert "wipe" not in ran
    (finished,) = [ev for ev in events if isinstance(ev, ToolCallFinished)]
    assert finished.error.type == "UnknownToolError" and "available tools: ['add']" in finished.result
    assert not [ev for ev in events if isinstance(ev, MessagesRewritten)]  # only the tools changed


class Trail:
    """An Audit that records every tool call."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def record(self, ctx, call, result):
        self.rows.append((ctx.run_id, call.name, call.arguments, str(result), result.ok))


def test_an_audit_records_every_tool_call_allowed_denied_or_unknown():
    ran.clear()
    trail = Trail()
    model = sim.scripted(
        [sim.calls(sim.call("add", a=2, b=3), sim.call("wipe"), sim.call("nope")), sim.reply("ok")],
        name="audit-three-calls",
    )
    with Executor(ports=Ports(audit=trail), policy=Policy().deny("wipe")) as executor:
        result, _ = run(executor, Agent(tools=[add, wipe], model=model))
    assert result.ok and ran == ["add"]
    rows = {name: row for row in trail.rows for name in [row[1]]}  # parallel calls finish in any order
    assert len(trail.rows) == 3 and {name: row[4] for name, row in rows.items()} == {
        "add": True,
        "wipe": False,
        "nope": False,
    }
    assert rows["add"][2:4] == ({"a": 2, "b": 3}, "5") and "denied" in rows["wipe"][3]
    assert {row[0] for row in trail.rows} == {result.run_id}


class Outbox:
    """A Delivery that gets every final result."""

    def __init__(self) -> None:
        self.delivered: list[RunResult] = []

    def deliver(self, ctx, result):
        self.delivered.append(result)


def test_a_delivery_gets_the_final_result_of_every_run_whatever_the_ending():
    outbox = Outbox()
    with Executor(ports=Ports(delivery=outbox)) as executor:
        done, _ = run(executor, Agent(model=sim.scripted([sim.reply("hello")], name="delivered")))
        failed, _ = run(executor, Agent(model=sim.failing(500, "down")))
    assert [(r.run_id, r.status, r.output) for r in outbox.delivered] == [
        (done.run_id, RunStatus.SUCCEEDED, "hello"),
        (failed.run_id, RunStatus.FAILED, None),
    ]


class Saves:
    """A Checkpointer that keeps the conversation at each save."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, list[str]]] = []

    async def save(self, ctx):
        self.saved.append((ctx.step, [m["role"] for m in ctx.messages]))


def test_a_checkpointer_saves_the_conversation_before_each_model_call_and_at_the_end():
    saves = Saves()
    model = sim.scripted([sim.call("add", a=1, b=2), sim.reply("3")], name="checkpointed")
    with Executor(ports=Ports(checkpointer=saves)) as executor:
        result, _ = run(executor, Agent(tools=[add], model=model))
    assert result.ok
    assert [roles for _, roles in saves.saved] == [
        ["user"],
        ["user", "assistant", "tool"],
        ["user", "assistant", "tool", "assistant"],
    ]


# -- the order, the defaults, the gate ----------------------------------------------------------


def test_observing_slots_hear_a_step_even_when_a_later_hook_stops_the_run():
    trail = Trail()

    class StopAfterTool:
        def after_tool_call(self, ctx, call, result):
            raise StopRun("one call is enough")

    model = sim.scripted([sim.call("add", a=1, b=1), sim.reply("2")], name="audit-then-stop")
    with Executor(ports=Ports(audit=trail), hooks=[StopAfterTool()]) as executor:
        result, _ = run(executor, Agent(tools=[add], model=model))
    assert result.status is RunStatus.STOPPED
    assert [row[1] for row in trail.rows] == ["add"]


def test_the_slots_run_around_the_hooks_in_the_documented_order():
    class Budget:
        def before_model_call(self, ctx, request):
            return None

    user, budget = object(), Budget()
    ports = Ports(audit=Trail(), critic=OneRevision(), checkpointer=Saves(), palette=NoWipe(), delivery=Outbox())
    critic = review_hook(ports.critic, 1, RunLog("r", "a"))  # the executor builds the critic's hook, as the budget
    order = ports.hooks([user], budget=budget, critic=critic)
    ports_of = [getattr(h, "port", h) for h in order]
    assert ports_of == [
        ports.palette,
        ports.audit,
        ports.checkpointer,
        user,
        ports.critic,
        ports.delivery,
        budget,
        ports.gate,
    ]


def test_slots_left_at_their_defaults_add_no_hook_but_the_gate():
    (gate,) = Ports().hooks([], budget=NO_BUDGET)
    assert isinstance(gate.port, Policy)


def test_a_slot_without_its_method_is_a_config_error():
    with pytest.raises(ConfigError, match=r"Ports\(critic=...\) needs an object with a review\(\) method"):
        Ports(critic=object())
    with pytest.raises(ConfigError, match="review"):
        Ports(critic=OneRevision)  # the class, not an instance
    ports = Ports()
    ports.audit = "not an audit"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="record"):
        Executor(ports=ports)


def test_the_callers_ports_are_not_changed_by_the_executor():
    class Sink:
        def on_event(self, event):
            pass

    ports = Ports(sinks=[])
    Executor(ports=ports, sinks=[Sink()], policy=Policy().deny("wipe"))
    assert ports.sinks == [] and isinstance(ports.gate, Policy) and not ports.gate.rules


def test_a_users_gate_decides_after_the_hooks_and_a_gate_that_raises_a_tool_error_denies():
    ran.clear()

    class NoWipes:
        async def decide(self, request):
            if request.name == "wipe":
                raise ToolError("wiping is off today")
            return await Policy().decide(request)

    model = sim.scripted([sim.calls(sim.call("add", a=1, b=2), sim.call("wipe")), sim.reply("ok")], name="own-gate")
    with Executor(ports=Ports(gate=NoWipes())) as executor:
        result, events = run(executor, Agent(tools=[add, wipe], model=model))
    assert result.ok and ran == ["add"]
    decisions = {ev.name: (ev.decision, ev.rule, ev.by) for ev in events if isinstance(ev, ApprovalResolved)}
    assert decisions["wipe"] == ("deny", "wiping is off today", "gate")
    assert decisions["add"][0] == "allow"
