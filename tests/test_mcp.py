"""MCP servers as tool sources: the reference time and git servers (stdio, from PyPI), a streamable-HTTP
server on 127.0.0.1, and small servers of our own for the faults (tests/mcp_servers/)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from executus_nb import Agent, ConfigError, Executor, MCPServer, RunStatus, sim
from executus_nb.nb.html import render_html
from executus_nb.nb.summary import summarize
from executus_nb.tool.mcp import tool_names
from executus_nb.tool.mcp_result import result_text
from executus_nb.tool.policy import Policy
from executus_nb.types.events import ToolCallFinished

SERVERS = Path(__file__).parent / "mcp_servers"
TOY = str(SERVERS / "toy.py")


def time_server(**options) -> MCPServer:
    return MCPServer.stdio(sys.executable, args=["-m", "mcp_server_time", "--local-timezone", "UTC"], **options)


def toy(**options) -> MCPServer:
    return MCPServer.stdio(sys.executable, args=[TOY], **options)


def children() -> set[int]:
    """This process's live child processes (a reaped child is gone; a zombie is not counted)."""
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def run_script(turns, tools, executor: Executor | None = None, **agent_options):
    agent = Agent(name="mcp-user", tools=tools, model=sim.scripted(turns), **agent_options)
    run = (executor or Executor()).run(agent, "go")
    return run, run.wait(timeout=90, quiet=True)


def finished(run) -> list[ToolCallFinished]:
    return [ev for ev in run.log.events if isinstance(ev, ToolCallFinished)]


@pytest.fixture(scope="module")
def clock():
    server = time_server(name="time")
    yield server
    server.close()


# -- the reference time server (stdio) ----------------------------------------------------------


def test_the_time_servers_tools_come_with_their_declared_schemas_under_the_servers_name(clock):
    tools = {t.name: t for t in clock.list_tools()}
    assert sorted(tools) == ["time_convert_time", "time_get_current_time"]
    schema = tools["time_get_current_time"].schema["function"]
    assert schema["name"] == "time_get_current_time"
    assert schema["description"] == "Get current time in a specific timezone"
    assert schema["parameters"]["required"] == ["timezone"]
    assert "IANA timezone" in schema["parameters"]["properties"]["timezone"]["description"]
    assert clock.running


def test_a_run_calls_the_time_server_under_a_policy_one_tool_allowed_one_asked_and_approved_in_code(clock):
    policy = Policy(approver="code", ask_timeout_s=60).allow("time_get_current_time").ask("time_*")
    turns = [
        sim.calls(
            sim.call("time_get_current_time", timezone="Europe/Warsaw"),
            sim.call("time_convert_time", source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo"),
        ),
        sim.reply("done"),
    ]
    agent = Agent(name="clock", tools=[clock], model=sim.scripted(turns))
    run = Executor(policy=policy).run(agent, "what time is it?")
    request = run.wait_for_approval(timeout=60)
    assert (request.name, request.arguments["target_timezone"], request.rule) == (
        "time_convert_time",
        "Asia/Tokyo",
        "ask time_*",
    )
    run.approve(request.call_id)
    assert run.wait(timeout=60, quiet=True).status is RunStatus.SUCCEEDED

    calls = run.tool_calls_df().set_index("tool")
    now = calls.loc["time_get_current_time"]
    assert (now.ok, now.decision, now.decided_by, now.rule) == (True, "allow", "policy", "allow time_get_current_time")
    assert json.loads(now.result)["timezone"] == "Europe/Warsaw"
    converted = calls.loc["time_convert_time"]
    assert (converted.ok, converted.decision, converted.decided_by) == (True, "allow", "user")
    assert json.loads(converted.result)["target"]["datetime"].endswith("T21:00:00+09:00")
    html = render_html(summarize(run.log.events))  # the RunView shows them as any tool step
    assert "time_convert_time" in html and "Asia/Tokyo" in html


def test_a_server_flagged_error_is_a_failed_step_and_bad_arguments_never_reach_the_server(clock):
    turns = [
        sim.calls(
            sim.call("time_get_current_time", timezone="Nowhere/Atlantis"),
            sim.call("time_get_current_time", zone="UTC"),
        ),
        sim.reply("done"),
    ]
    run, result = run_script(turns, [clock])
    assert result.status is RunStatus.SUCCEEDED  # a failed tool call is the model's to read
    flagged, invalid = sorted(finished(run), key=lambda ev: ev.step)
    assert flagged.error.type == "ToolError" and "Invalid timezone" in flagged.error.message
    assert invalid.error.type == "ToolArgumentsError"
    assert "'timezone' is a required property" in invalid.error.message


def test_a_policy_rule_denies_a_whole_server_by_its_prefix_and_the_output_cap_applies(clock):
    turns = [sim.call("time_get_current_time", timezone="UTC"), sim.reply("done")]
    run, _ = run_script(turns, [clock], Executor(policy=Policy().deny("time_*")))
    (denied,) = finished(run)
    assert denied.error.type == "ToolDenied" and "deny time_*" in denied.error.message

    turns = [sim.call("time_convert_time", source_timezone="UTC", time="08:30", target_timezone="UTC"), sim.reply("ok")]
    run, _ = run_script(turns, [clock], max_tool_output_chars=100)
    (capped,) = finished(run)
    assert capped.truncated and capped.error is None
    assert capped.result.startswith('{\n  "source"') and "[output truncated: showed 100 of" in capped.result


def test_a_servers_permission_is_each_tools_default_and_a_rule_still_wins():
    server = toy(name="toy", permission="deny")
    try:
        turns = [sim.calls(sim.call("toy_echo", text="hi"), sim.call("toy_pid")), sim.reply("done")]
        run, _ = run_script(turns, [server], Executor(policy=Policy().allow("toy_pid")))
        results = {ev.name: ev for ev in finished(run)}
        assert (
            results["toy_echo"].error.type == "ToolDenied"
            and "tool default (deny)" in results["toy_echo"].error.message
        )
        assert results["toy_pid"].error is None and int(results["toy_pid"].result) in children()
    finally:
        server.close()


# -- the reference git server (stdio) on a repository made here ---------------------------------


def test_the_git_server_reads_a_repository_the_test_makes(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "notes.txt").write_text("first\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Add the first note"], check=True)
    (repo / "draft.txt").write_text("untracked\n")

    server = MCPServer.stdio(sys.executable, args=["-m", "mcp_server_git", "--repository", str(repo)], name="git")
    turns = [
        sim.calls(sim.call("git_git_status", repo_path=str(repo)), sim.call("git_git_log", repo_path=str(repo))),
        sim.reply("done"),
    ]
    with Executor() as executor:
        run, result = run_script(turns, [server], executor)
    assert result.status is RunStatus.SUCCEEDED
    calls = run.tool_calls_df().set_index("tool")
    assert calls.loc["git_git_status", "ok"] and "draft.txt" in calls.loc["git_git_status", "result"]
    assert calls.loc["git_git_log", "ok"] and "Add the first note" in calls.loc["git_git_log", "result"]
    assert not server.running


# -- streamable HTTP, a server on 127.0.0.1 --------------------------------------------------------


@pytest.fixture
def web():
    from tests.mcp_servers.http_app import Served

    served = Served().start()
    yield served
    served.stop()


def test_a_streamable_http_server_serves_a_run_and_its_header_secret_never_shows(web):
    secret = "Bearer mcp-http-secret-7f3a9c2e41"
    server = MCPServer.http(web.url, headers={"Authorization": secret}, name="web")
    assert "mcp-http-secret" not in repr(server)
    turns = [sim.calls(sim.call("web_greet", name="Ada"), sim.call("web_authorization")), sim.reply("done")]
    with Executor() as executor:
        run, result = run_script(turns, [server], executor)
    assert result.status is RunStatus.SUCCEEDED
    calls = run.tool_calls_df().set_index("tool")
    assert calls.loc["web_greet", "result"] == "hello Ada"
    assert calls.loc["web_authorization", "result"] == "Bearer ***"  # it reached the server; masked in the record
    dumped = json.dumps([ev.model_dump(mode="json") for ev in run.log.events])
    assert "mcp-http-secret" not in dumped and "7f3a9c2e41" not in dumped


def test_an_http_server_that_is_not_there_is_a_config_error_at_start():
    import socket

    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        server = MCPServer.http(url, name="nowhere", start_timeout_s=10)
        with pytest.raises(ConfigError, match="MCP server 'nowhere' could not start"):
            server.list_tools()


# -- faults, each clear and bounded ---------------------------------------------------------------


def test_a_command_that_does_not_exist_is_a_config_error_naming_it_and_the_run_fails_with_it():
    server = MCPServer.stdio("no-such-mcp-server-xyz", name="ghost")
    with pytest.raises(ConfigError, match="'no-such-mcp-server-xyz' was not found"):
        server.list_tools()
    run, result = run_script([sim.reply("never")], [server])
    assert result.status is RunStatus.FAILED
    assert result.error.type == "ConfigError" and "no-such-mcp-server-xyz" in result.error.message


def test_a_server_that_crashes_mid_call_fails_that_step_with_the_reason_and_is_started_again():
    server = toy(name="toy")
    try:
        turns = [sim.call("toy_pid"), sim.call("toy_crash"), sim.call("toy_pid"), sim.reply("done")]
        run, result = run_script(turns, [server])
        assert result.status is RunStatus.SUCCEEDED
        first, crashed, again = sorted(finished(run), key=lambda ev: ev.step)
        assert crashed.error.type == "ToolError"
        assert "failed during the call to crash" in crashed.error.message
        assert "crashing on purpose" in crashed.error.message  # the end of its stderr
        assert gone(int(first.result)) and int(again.result) != int(first.result)
    finally:
        server.close()


def test_a_server_that_died_between_calls_is_started_again_for_the_next_call_which_does_not_fail():
    server = toy(name="toy")
    try:
        run, _ = run_script([sim.call("toy_pid"), sim.reply("done")], [server])
        pid = int(finished(run)[0].result)
        psutil.Process(pid).kill()
        deadline = time.monotonic() + 30
        while server.running and time.monotonic() < deadline:  # its end is seen once its stdout closes
            time.sleep(0.01)
        assert not server.running
        run, result = run_script([sim.call("toy_echo", text="back"), sim.reply("done")], [server])
        (echoed,) = finished(run)
        assert (echoed.error, echoed.result) == (None, "back")
    finally:
        server.close()


def test_cancelling_a_run_cancels_its_mcp_call_promptly_and_the_server_stays_up():
    server = toy(name="toy")
    try:
        turns = [sim.call("toy_pid"), sim.call("toy_stall"), sim.reply("never")]
        run = Executor().run(Agent(name="a", tools=[server], model=sim.scripted(turns)), "go")
        deadline = time.monotonic() + 60
        while sum(ev.kind == "tool_call_started" for ev in run.log.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        cancelled = time.monotonic()
        run.cancel()
        assert run.wait(timeout=30, quiet=True).status is RunStatus.CANCELLED
        assert time.monotonic() - cancelled < 5
        first, closed = sorted(finished(run), key=lambda ev: ev.step)
        pid = int(first.result)
        assert closed.name == "toy_stall" and closed.error.type == "RunCancelled"
        again, _ = run_script([sim.call("toy_pid"), sim.reply("done")], [server])
        assert int(finished(again)[0].result) == pid  # the same session: a cancelled call does not end it
    finally:
        server.close()


def test_a_call_that_hangs_is_bounded_by_call_timeout_s_and_the_session_goes_on():
    server = toy(name="toy", call_timeout_s=1.0)
    try:
        turns = [sim.call("toy_stall"), sim.call("toy_echo", text="still here"), sim.reply("done")]
        started = time.monotonic()
        run, result = run_script(turns, [server])
        assert result.status is RunStatus.SUCCEEDED
        stalled, echoed = sorted(finished(run), key=lambda ev: ev.step)
        assert stalled.error.type == "ToolTimeoutError" and "timed out after 1 s" in stalled.error.message
        assert 0.9 <= stalled.duration_s < 10
        assert echoed.result == "still here"
        assert time.monotonic() - started < 60
    finally:
        server.close()


def test_a_server_that_hangs_at_start_is_a_config_error_within_start_timeout_s_and_leaves_no_child():
    before = children()
    server = MCPServer.stdio(sys.executable, args=[str(SERVERS / "silent.py")], name="silent", start_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not answer within start_timeout_s=1 s"):
        server.list_tools()
    assert time.monotonic() - started < 12  # the timeout, then the SDK's bounded stop (stdin, SIGTERM, SIGKILL)
    assert children() <= before


def test_a_server_that_prints_what_is_not_json_rpc_is_a_config_error_at_once():
    before = children()
    server = MCPServer.stdio(sys.executable, args=[str(SERVERS / "garbage.py")], name="noisy", start_timeout_s=30)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not valid JSON-RPC: 'hello, this is not JSON-RPC'"):
        server.list_tools()
    assert time.monotonic() - started < 15  # not the 30 s start timeout
    assert children() <= before


def test_a_server_that_writes_what_is_not_json_rpc_mid_call_fails_that_step_at_once_not_at_the_timeout():
    server = MCPServer.stdio(sys.executable, args=[str(SERVERS / "babbler.py")], name="b", call_timeout_s=60)
    try:
        run, result = run_script([sim.call("b_babble"), sim.call("b_babble"), sim.reply("ok")], [server])
        assert result.status is RunStatus.SUCCEEDED
        first, second = sorted(finished(run), key=lambda ev: ev.step)
        for babbled in (first, second):  # the second call is made on a new session
            assert babbled.error.type == "ToolError"
            assert "not valid JSON-RPC: 'oops, a stray print'" in babbled.error.message
            assert babbled.duration_s < 30  # the session ends at the stray line, not at call_timeout_s
    finally:
        server.close()


def test_a_malformed_result_is_a_failed_step_and_a_malformed_tool_list_a_config_error():
    server = MCPServer.stdio(sys.executable, args=[str(SERVERS / "babbler.py")], name="b")
    try:
        run, result = run_script([sim.call("b_garble"), sim.reply("ok")], [server])
        assert result.status is RunStatus.SUCCEEDED
        (garbled,) = finished(run)
        assert garbled.error.type == "ToolError" and "with a malformed result" in garbled.error.message
        assert server.running  # one bad answer does not end the session
    finally:
        server.close()
    bad_list = MCPServer.stdio(sys.executable, args=[str(SERVERS / "babbler.py"), "--bad-list"], name="bl")
    with pytest.raises(
        ConfigError, match=r"'bl' could not start: .*ListToolsResult is malformed \(tools.0.inputSchema: Field required"
    ):
        bad_list.list_tools()


def test_a_server_that_exits_at_start_is_a_config_error_quoting_its_stderr():
    code = "import sys; print('missing API key', file=sys.stderr); sys.exit(2)"
    server = MCPServer.stdio(sys.executable, args=["-c", code], name="quits")
    with pytest.raises(ConfigError, match=r"'quits' could not start: it closed the connection .*missing API key"):
        server.list_tools()


# -- secrets, lifecycle ---------------------------------------------------------------------------


def test_a_secret_in_env_reaches_the_server_and_never_shows_in_events_or_the_repr():
    token = "tok-env-secret-5d1e8b"
    server = toy(name="toy", env={"TOY_API_TOKEN": token})
    assert token not in repr(server) and "TOY_API_TOKEN" in repr(server)
    try:
        run, result = run_script([sim.call("toy_env_var", name="TOY_API_TOKEN"), sim.reply("done")], [server])
        assert result.status is RunStatus.SUCCEEDED
        (read,) = finished(run)
        assert read.result == "***"
        assert token not in json.dumps([ev.model_dump(mode="json") for ev in run.log.events])
    finally:
        server.close()


def test_a_secret_given_to_a_command_line_option_is_redacted_too():
    server = MCPServer.stdio(
        "some-server", args=["--api-key", "argv-secret-91c2", "--verbose", "--token=argv-tok-77ab"]
    )
    shown = repr(server)
    assert "argv-secret-91c2" not in shown and "argv-tok-77ab" not in shown and "--verbose" in shown
    from executus_nb.redaction import redact

    assert redact("the key is argv-secret-91c2") == "the key is ***"


def test_the_tool_list_is_cached_and_listed_again_after_the_servers_list_changed_notification():
    server = toy(name="toy")
    try:
        first = server.list_tools()
        assert server.list_tools() == first  # the same Tool objects: not listed again
        assert "toy_shout" not in {t.name for t in first}
        run, _ = run_script([sim.call("toy_grow"), sim.reply("done")], [server])
        assert finished(run)[0].result == "grown"
        deadline = time.monotonic() + 30
        while not server._session.stale and time.monotonic() < deadline:  # the notification may trail the answer
            time.sleep(0.01)
        assert "toy_shout" in {t.name for t in server.list_tools()}
        run, _ = run_script([sim.call("toy_shout", text="hey"), sim.reply("done")], [server])
        assert finished(run)[0].result == "HEY"
    finally:
        server.close()


def test_executor_close_stops_every_server_its_runs_used_and_a_later_run_starts_it_again():
    server = toy(name="toy")
    executor = Executor()
    run, _ = run_script([sim.call("toy_pid"), sim.reply("done")], [server], executor)
    pid = int(finished(run)[0].result)
    other, _ = run_script([sim.call("toy_pid"), sim.reply("done")], [server], executor)
    assert int(finished(other)[0].result) == pid  # shared by the executor's runs
    executor.close()
    assert gone(pid) and not server.running
    again, _ = run_script([sim.call("toy_pid"), sim.reply("done")], [server], executor)
    assert int(finished(again)[0].result) != pid
    executor.close()
    assert gone(int(finished(again)[0].result))


def test_async_with_executor_closes_its_servers_and_runs_on_the_callers_loop_share_them():
    server = toy(name="toy")

    async def main() -> list[int]:
        async with Executor(tools=[server]) as executor:
            agent = Agent(name="a", tools=["toy"], model=sim.scripted([sim.call("toy_pid"), sim.reply("done")]))
            by_tool = Agent(name="b", tools=["toy_pid"], model=sim.scripted([sim.call("toy_pid"), sim.reply("ok")]))
            results = await asyncio.gather(executor.arun(agent, "go"), executor.arun(by_tool, "go"))
        return [int(next(s for s in r.steps if s.kind == "tool").result) for r in results]

    pids = asyncio.run(main())
    assert pids[0] == pids[1] and gone(pids[0]) and not server.running


def test_a_name_no_local_tool_and_no_server_of_the_executor_has_fails_the_run_listing_the_names_known():
    server = toy(name="toy")
    with Executor(tools=[server]) as executor:
        run, result = run_script([sim.reply("never")], ["toy_pdi"], executor)
    assert result.status is RunStatus.FAILED and result.error.type == "ConfigError"
    assert "no tool named 'toy_pdi'" in result.error.message and "did you mean 'toy_pid'?" in result.error.message
    assert not server.running


def test_interpreter_exit_stops_a_server_that_was_never_closed():
    script = textwrap.dedent(
        f"""
        import json, sys
        import psutil
        from executus_nb import MCPServer
        server = MCPServer.stdio(sys.executable, args=[{TOY!r}])
        server.list_tools()
        print(json.dumps([p.pid for p in psutil.Process().children()]))
        """
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    (pid,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert gone(pid)


# -- names, results, the extra ----------------------------------------------------------------------


def test_tool_names_are_prefixed_sanitised_capped_and_made_unique_the_same_way_every_time():
    remote = ["get.time", "get time", "x" * 80, "1st", "ok-name"]
    names = tool_names("srv", remote)
    assert names["get.time"] == "srv_get_time"
    assert names["get time"].startswith("srv_get_time_") and names["get time"] != names["get.time"]
    assert len(names["x" * 80]) == 64 and names["x" * 80].startswith("srv_xxx")
    assert names["1st"] == "srv_1st" and names["ok-name"] == "srv_ok-name"
    assert tool_names("srv", remote) == names
    assert tool_names(None, ["1st"]) == {"1st": "_1st"}
    assert len(set(tool_names(None, ["a" * 70, "a" * 71]).values())) == 2


def test_mcp_results_map_text_images_resources_and_is_error():
    from mcp_types import (
        BlobResourceContents,
        CallToolResult,
        EmbeddedResource,
        ImageContent,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )

    result = CallToolResult(
        content=[
            TextContent(text="hello"),
            ImageContent(data="iVBORw0KGgo=", mime_type="image/png"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="inside")),
            EmbeddedResource(resource=BlobResourceContents(uri="file:///b.bin", blob="AAAA", mime_type="x/y")),
            ResourceLink(uri="file:///c.md", name="c"),
        ]
    )
    assert result_text(result).splitlines() == [
        "hello",
        "[image image/png, 8 bytes]",
        "[resource file:///a.txt]",
        "inside",
        "[resource file:///b.bin (x/y, 3 bytes)]",
        "[resource link file:///c.md (c)]",
    ]
    assert result_text(CallToolResult(content=[], structured_content={"n": 1})) == '{"n": 1}'
    from executus_nb.errors import ToolError

    with pytest.raises(ToolError, match="^no such thing$"):
        result_text(CallToolResult(content=[TextContent(text="no such thing")], is_error=True))


def test_without_the_mcp_extra_an_mcp_server_is_an_import_error_naming_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mcp" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'executus_nb\[mcp\]'"):
        MCPServer.stdio("anything")


def test_bad_server_options_are_config_errors():
    with pytest.raises(ConfigError, match="permission"):
        MCPServer.stdio("x", permission="maybe")
    with pytest.raises(ConfigError, match="list of arguments"):
        MCPServer.stdio("x", args="-m server")
    with pytest.raises(ConfigError, match="http:// or https://"):
        MCPServer.http("ftp://example.invalid/mcp")
    with pytest.raises(ConfigError, match="start_timeout_s"):
        MCPServer.stdio("x", start_timeout_s=0)
