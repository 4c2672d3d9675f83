"""A new port written from outside the package: stop a run after 3 tool calls whose result says 'error'."""

from __future__ import annotations

from executus_nb import Agent, Executor, RunContext, RunStatus, StopRun, sim, tool


class StopAfterErrors:
    """Ends the run once ``limit`` tool results have contained 'error'."""

    def __init__(self, limit: int = 3):
        self.limit, self.seen = limit, 0

    def after_tool_call(self, ctx: RunContext, call, result: str) -> None:
        if "error" in result.lower():
            self.seen += 1
            if self.seen >= self.limit:
                raise StopRun(f"{self.seen} tool calls failed in run {ctx.run_id}")


@tool
def flaky(n: int) -> str:
    """Fails for every n."""
    raise RuntimeError(f"flaky {n} broke")


def test_a_port_from_outside_stops_the_run_after_three_failing_tool_calls_keeping_its_steps():
    model = sim.scripted([sim.call("flaky", n=i) for i in range(1, 6)] + [sim.reply("done")])
    with Executor() as executor:
        result = executor.run(Agent(tools=[flaky], model=model), "go", hooks=[StopAfterErrors()]).wait(120, quiet=True)
    assert result.status is RunStatus.STOPPED
    assert result.error.type == "StopRun" and result.error.message.startswith("3 tool calls failed")
    assert [s.kind for s in result.steps] == ["model", "tool"] * 3  # every step so far kept, none after
    assert all(s.finished_at is not None for s in result.steps)
