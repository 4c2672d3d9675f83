"""Streaming: ``run.stream()`` and ``run.text_stream()`` hand out events and text as they happen; deltas stay
out of the log; a terminal ``wait()`` prints streamed text as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time

from executus_nb import Agent, Executor, Run, RunStatus, TextDelta, sim, tool
from executus_nb.model.sim import SimToolCall, SimTurn
from executus_nb.nb.console import StepPrinter
from executus_nb.types.events import Event, ModelCallFinished, ModelCallStarted, RunFinished
from tests.waiting import wait_until

WAIT = 60.0


@tool
def note(text: str) -> str:
    """Note a text."""
    return text


def _held_model(gate: threading.Event, name: str) -> str:
    """A streamed model: turn 1 says something and calls ``note``; turn 2 waits for ``gate`` before its answer."""

    def fn(messages: list[dict], tools: list[dict]) -> SimTurn | str:
        if sum(1 for m in messages if m["role"] == "assistant") == 0:
            return SimTurn(text="thinking about it ", tool_calls=(SimToolCall(name="note", arguments={"text": "x"}),))
        assert gate.wait(WAIT), "the test never let the model answer"
        return "the answer is 42"

    return sim.function(fn, name=name)


def _agent(model: str) -> Agent:
    return Agent(name="streamer", tools=[note], model=model, stream=True)


def test_stream_gives_text_deltas_while_the_run_is_still_going():
    gate = threading.Event()
    run = Executor().run(_agent(_held_model(gate, "stream-held")), "go")

    async def read() -> list[Event | TextDelta]:
        seen: list[Event | TextDelta] = []
        async for item in run.stream():
            seen.append(item)
            if isinstance(item, TextDelta) and not gate.is_set():
                assert not run.done  # the delta came while the model of turn 2 is held back
                gate.set()
        return seen

    seen = asyncio.run(asyncio.wait_for(read(), WAIT))  # iterated on another loop than the run's
    deltas = [i for i in seen if isinstance(i, TextDelta)]
    events = [i for i in seen if not isinstance(i, TextDelta)]
    assert "".join(d.text for d in deltas) == "thinking about it the answer is 42"
    assert {d.step for d in deltas} == {1, 3}
    assert events == run.events  # every event, once, in order; the stream ends with RunFinished
    assert isinstance(seen[-1], RunFinished)
    finished_1 = next(e for e in events if isinstance(e, ModelCallFinished) and e.step == 1)
    assert seen.index(deltas[0]) < seen.index(finished_1)  # a step's deltas come before its finished event
    assert run.wait(timeout=WAIT, quiet=True).output == "the answer is 42"


def test_a_late_reader_gets_the_past_events_but_not_finished_steps_deltas():
    gate = threading.Event()
    gate.set()
    run = Executor().run(_agent(_held_model(gate, "stream-late")), "go")
    run.wait(timeout=WAIT, quiet=True)

    async def read() -> list[Event | TextDelta]:
        return [item async for item in run.stream()]

    seen = asyncio.run(asyncio.wait_for(read(), WAIT))
    assert seen == run.events  # the past, in order, no deltas replayed (the finished events hold the text)
    # and the text of a late reader is still whole: taken from the finished model calls
    assert "".join(run.text_stream()) == "thinking about it the answer is 42"


def test_text_stream_in_sync_code_yields_text_as_it_arrives():
    gate = threading.Event()
    run = Executor().run(_agent(_held_model(gate, "stream-sync")), "go")  # a script: the background loop
    pieces = []
    for text in run.text_stream():
        pieces.append(text)
        if not gate.is_set():
            assert not run.done
            gate.set()
    assert "".join(pieces) == "thinking about it the answer is 42"
    assert len(pieces) > 2  # word by word, not one block at the end
    assert run.done


# In a fresh interpreter: re-entering the loop patches asyncio for the whole process (nest_asyncio2, as in
# a kernel), which must not leak into the other tests of this worker.
OWN_LOOP_SCRIPT = """
import asyncio, json
from executus_nb import Agent, Executor, sim
from executus_nb.model.sim import SimTurn

def fn(messages, tools):
    return SimTurn(text="thinking about it the answer is 42")

async def main():
    agent = Agent(name="streamer", model=sim.function(fn, name="stream-own-loop"), stream=True)
    run = Executor().run(agent, "go")  # on this loop, as in a cell
    return list(run.text_stream())

print(json.dumps(asyncio.run(asyncio.wait_for(main(), 60))))
"""


def test_text_stream_of_a_run_on_the_callers_own_loop_does_not_deadlock():
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", OWN_LOOP_SCRIPT], capture_output=True, text=True, timeout=WAIT * 2, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pieces = json.loads(done.stdout.strip().splitlines()[-1])
    assert "".join(pieces) == "thinking about it the answer is 42"


def test_a_failing_runs_stream_ends_with_its_run_finished_and_raises_nothing():
    run = Executor().run(Agent(name="broken", model=sim.failing(status=400), stream=True), "go")

    async def read() -> list[Event | TextDelta]:
        return [item async for item in run.stream()]

    seen = asyncio.run(asyncio.wait_for(read(), WAIT))
    assert isinstance(seen[-1], RunFinished)
    assert seen[-1].status == RunStatus.FAILED
    assert list(run.text_stream()) == []


def _failing_after_text_model(name: str) -> str:
    """A streamed model: turn 1 says something and calls ``note``; turn 2 fails like a provider (HTTP 400)."""

    def fn(messages: list[dict], tools: list[dict]) -> SimTurn:
        if sum(1 for m in messages if m["role"] == "assistant") == 0:
            return SimTurn(text="thinking about it ", tool_calls=(SimToolCall(name="note", arguments={"text": "x"}),))
        raise sim.ProviderError("the provider refused the request", status_code=400)

    return sim.function(fn, name=name)


def test_a_run_failing_after_streaming_text_ends_both_streams_and_raises_nothing():
    run = Executor().run(_agent(_failing_after_text_model("stream-fails-late")), "go")
    pieces = list(run.text_stream())  # read live, from the start: the text that came, then the end
    assert "".join(pieces) == "thinking about it "
    assert run.done and run.result.status is RunStatus.FAILED

    async def read() -> list[Event | TextDelta]:
        return [item async for item in run.stream()]

    seen = asyncio.run(asyncio.wait_for(read(), WAIT))
    assert seen == run.events and seen[-1].status is RunStatus.FAILED  # a late reader: the whole past, no raise


def _turn_2_started(run: Run) -> bool:
    return any(isinstance(e, ModelCallStarted) and e.step == 3 for e in run.events)


def test_a_run_cancelled_while_streamed_ends_both_streams_and_raises_nothing():
    gate = threading.Event()  # never set while the runs go: each is cancelled while turn 2's model is held
    try:
        run = Executor().run(_agent(_held_model(gate, "stream-cancel-async")), "go")

        async def read() -> list[Event | TextDelta]:
            seen: list[Event | TextDelta] = []
            async for item in run.stream():
                seen.append(item)
                if isinstance(item, ModelCallStarted) and item.step == 3:
                    run.cancel()
            return seen

        seen = asyncio.run(asyncio.wait_for(read(), WAIT))
        assert isinstance(seen[-1], RunFinished) and seen[-1].status is RunStatus.CANCELLED
        assert [i for i in seen if not isinstance(i, TextDelta)] == run.events
        assert "".join(i.text for i in seen if isinstance(i, TextDelta)) == "thinking about it "

        run = Executor().run(_agent(_held_model(gate, "stream-cancel-sync")), "go")
        pieces = []
        for text in run.text_stream():
            pieces.append(text)
            if "".join(pieces) == "thinking about it ":
                wait_until(lambda: _turn_2_started(run), WAIT)
                run.cancel()
        assert "".join(pieces) == "thinking about it "
        assert run.done and run.result.status is RunStatus.CANCELLED
        assert "".join(run.text_stream()) == "thinking about it "  # a late reader of the cancelled run
    finally:
        gate.set()  # the held model threads end


def test_a_reader_joining_mid_run_first_gets_what_already_happened_then_the_rest_live():
    gate = threading.Event()
    run = Executor().run(_agent(_held_model(gate, "stream-join-mid")), "go")
    try:
        # joined while turn 2's model is held: turn 1's text and tool call have happened
        wait_until(lambda: _turn_2_started(run), WAIT)
        past = run.events

        async def read() -> list[Event | TextDelta]:
            seen: list[Event | TextDelta] = []
            async for item in run.stream():
                seen.append(item)
                if len(seen) == len(past):
                    assert seen == past  # the past first, in order, without turn 1's deltas
                    gate.set()
            return seen

        seen = asyncio.run(asyncio.wait_for(read(), WAIT))
    finally:
        gate.set()
    assert [i for i in seen if not isinstance(i, TextDelta)] == run.events  # every event once, in order
    deltas = [i for i in seen if isinstance(i, TextDelta)]
    assert {d.step for d in deltas} == {3} and "".join(d.text for d in deltas) == "the answer is 42"
    assert isinstance(seen[-1], RunFinished) and seen[-1].status is RunStatus.SUCCEEDED


def test_a_sync_reader_joining_mid_run_gets_the_text_so_far_then_the_rest():
    gate = threading.Event()
    run = Executor().run(_agent(_held_model(gate, "stream-join-sync")), "go")
    try:
        wait_until(lambda: _turn_2_started(run), WAIT)
        pieces = []
        for text in run.text_stream():
            pieces.append(text)
            gate.set()  # the past came first: now let turn 2 answer
    finally:
        gate.set()
    assert pieces[0] == "thinking about it "  # turn 1's text in one piece, from its finished model call
    assert "".join(pieces) == "thinking about it the answer is 42" and len(pieces) > 2  # turn 2 live


def test_deltas_are_not_stored_in_the_log():
    def words(n: int, reading: threading.Event) -> str:
        def fn(messages: list[dict], tools: list[dict]) -> str:
            assert reading.wait(WAIT), "the reader never subscribed"  # a late reader gets the text in one piece
            return "w " * n

        return sim.function(fn, name=f"stream-words-{n}")

    sizes = {}
    for n in (10, 2_000):
        reading = threading.Event()
        run = Executor().run(Agent(name="long", model=words(n, reading), stream=True), "go")

        async def read(run: Run, reading: threading.Event) -> int:
            deltas = 0
            async for item in run.stream():
                reading.set()  # subscribed: now the model may answer
                deltas += isinstance(item, TextDelta)
            return deltas

        count = asyncio.run(asyncio.wait_for(read(run, reading), WAIT))
        assert count == n  # every chunk was handed out live
        sizes[n] = len(run.events)
        assert run.log.partial == {}
    assert sizes[10] == sizes[2_000]  # the log holds one record per step, not one per chunk


def test_nobody_reading_means_nobody_subscribed():
    gate = threading.Event()
    run = Executor().run(_agent(_held_model(gate, "stream-idle")), "go")
    before = run.log.subscriber_count
    items = run.stream()  # not iterated yet: no subscription
    assert run.log.subscriber_count == before
    gate.set()
    run.wait(timeout=WAIT, quiet=True)

    async def read_one() -> None:
        async with contextlib.aclosing(items):
            async for _ in items:
                break  # a reader that stops early unsubscribes

    asyncio.run(read_one())
    assert run.log.subscriber_count == 0 and run.log._delta_watchers == []  # the run's own subscriber left at its end
    for _ in run.text_stream():
        break  # a sync reader that stops early unsubscribes too
    assert run.log.subscriber_count == 0 and run.log._delta_watchers == []


def test_the_terminal_printer_prints_streamed_text_as_it_arrives():
    gate = threading.Event()
    run = Executor().run(_agent(_held_model(gate, "stream-print")), "go")
    out = io.StringIO()
    printer = StepPrinter(run.log, out)
    deadline = time.monotonic() + WAIT
    while "thinking about it" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "thinking about it" in out.getvalue()
    assert not run.done  # printed while the run goes on
    gate.set()
    run.wait(timeout=WAIT, quiet=True)
    printer.close()
    text = out.getvalue()
    assert "the answer is 42" in text
    lines = text.splitlines()
    assert lines[0].startswith("thinking about it")  # the text, then the step lines each on their own line
    assert any(line.startswith("  #1 ") for line in lines[1:])


def test_streamed_deltas_are_redacted_even_when_a_secret_is_split_across_chunks():
    from executus_nb.redaction import redactor
    from executus_nb.run.log import RunLog

    secret = "stream-delta-secret-0123456789"
    redactor.add(secret)
    log = RunLog("r", "a")
    deltas: list[TextDelta] = []
    log.subscribe_stream(lambda _event: None, deltas.append)
    for chunk in ("the key is ", secret[:5], secret[5:12], secret[12:], " ok"):
        log.stream_text(1, chunk)
    text = "".join(d.text for d in deltas)
    assert secret[:8] not in text and secret[5:] not in text
    assert text.endswith("*** ok") and text.startswith("the key is ")


def test_text_streamed_before_a_cancel_is_kept_with_the_cancelled_call_not_in_the_conversation():
    gate = threading.Event()

    def held(messages: list[dict], tools: list[dict]) -> str:
        assert gate.wait(WAIT), "the test never let the model answer"
        return "too late"

    run = Executor().run(Agent(name="streamer", model=sim.function(held, name="stream-cut"), stream=True), "go")
    wait_until(lambda: any(isinstance(e, ModelCallStarted) for e in run.log.events), WAIT)
    run.loop.call_soon_threadsafe(run.log.stream_text, 1, "half an ans")  # chunks that arrived, as call.py adds them
    wait_until(lambda: run.log.partial.get(1) == "half an ans", WAIT)
    run.cancel()
    result = run.wait(timeout=WAIT, quiet=True)
    gate.set()
    assert result.status is RunStatus.CANCELLED
    cut = next(e for e in run.events if isinstance(e, ModelCallFinished))
    assert cut.error is not None and cut.message == {"role": "assistant", "content": "half an ans"}
    assert run.log.partial == {}  # the text now lives in its event
    assert [m["role"] for m in result.messages] == ["user"]  # shown, but no answer the next turn would continue
