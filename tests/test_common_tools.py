"""The common tools: workspace file confinement, the safe calculator, the clock and guarded web fetch."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from executus_nb import Agent, Executor, RunStatus, Tool, sim
from executus_nb.errors import ConfigError, PathOutsideRoot, SSRFBlocked, ToolError
from executus_nb.tool import common
from executus_nb.tool.common import calculator, current_time, file_tools, make_web_fetch, web_fetch


def test_the_package_exports_exactly_the_common_tools():
    assert sorted(common.__all__) == ["calculator", "current_time", "file_tools", "make_web_fetch", "web_fetch"]
    assert all(isinstance(t, Tool) for t in (web_fetch, calculator, current_time))
    assert (web_fetch.name, calculator.name, current_time.name) == ("web_fetch", "calculator", "current_time")


# -- file tools -------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace root with a nested file, next to an outside directory holding a secret."""
    root = tmp_path / "root"
    (root / "notes" / "deep").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("hello", encoding="utf-8")
    (root / "notes" / "deep" / "b.txt").write_text("deep text", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret", encoding="utf-8")
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "dangling.txt").symlink_to(outside / "new.txt")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "inner.txt").symlink_to(root / "notes" / "a.txt")
    return root


def tools_for(root: Path, **kwargs) -> dict[str, Tool]:
    return {t.name: t for t in file_tools(root, **kwargs)}


def test_file_tools_are_three_new_tools_and_write_asks(workspace: Path):
    first, second = tools_for(workspace), tools_for(workspace)
    assert list(first) == ["read_file", "write_file", "list_dir"]
    assert all(first[name] is not second[name] for name in first)
    assert first["write_file"].permission == "ask"
    assert first["read_file"].permission is None and first["list_dir"].permission is None
    assert first["list_dir"].schema["function"]["parameters"]["properties"]["path"]["default"] == "."


@pytest.mark.parametrize("root", ["missing", "notes/a.txt"], ids=["missing-root", "root-is-a-file"])
def test_the_root_must_be_an_existing_directory(workspace: Path, root: str):
    with pytest.raises(ConfigError, match="not an existing directory"):
        file_tools(workspace / root)


# (tool, arguments, error, text in the message); "{outside}" is the outside directory
ESCAPES = [
    ("dotdot", "read_file", {"path": "../outside/secret.txt"}, PathOutsideRoot, "outside the workspace root"),
    (
        "nested-dotdot",
        "read_file",
        {"path": "notes/deep/../../../outside/secret.txt"},
        PathOutsideRoot,
        "outside the workspace root",
    ),
    ("absolute-outside", "read_file", {"path": "{outside}/secret.txt"}, PathOutsideRoot, "outside the workspace root"),
    ("etc-passwd", "read_file", {"path": "/etc/passwd"}, PathOutsideRoot, "outside the workspace root"),
    ("symlink-file", "read_file", {"path": "escape.txt"}, PathOutsideRoot, "symlink that leads outside"),
    ("symlinked-dir", "read_file", {"path": "outdir/secret.txt"}, PathOutsideRoot, "symlink that leads outside"),
    ("nul-byte", "read_file", {"path": "notes/a.txt\x00.png"}, ToolError, "NUL byte"),
    (
        "write-dotdot",
        "write_file",
        {"path": "../outside/x.txt", "content": "x"},
        PathOutsideRoot,
        "outside the workspace root",
    ),
    (
        "write-absolute-outside",
        "write_file",
        {"path": "{outside}/x.txt", "content": "x"},
        PathOutsideRoot,
        "outside the workspace root",
    ),
    (
        "write-symlink-file",
        "write_file",
        {"path": "escape.txt", "content": "x"},
        PathOutsideRoot,
        "symlink that leads outside",
    ),
    (
        "write-dangling-symlink",
        "write_file",
        {"path": "dangling.txt", "content": "x"},
        PathOutsideRoot,
        "symlink that leads outside",
    ),
    (
        "write-symlinked-dir",
        "write_file",
        {"path": "outdir/new/x.txt", "content": "x"},
        PathOutsideRoot,
        "symlink that leads outside",
    ),
    ("write-nul-byte", "write_file", {"path": "a\x00b", "content": "x"}, ToolError, "NUL byte"),
    ("list-dotdot", "list_dir", {"path": ".."}, PathOutsideRoot, "outside the workspace root"),
    ("list-symlinked-dir", "list_dir", {"path": "outdir"}, PathOutsideRoot, "symlink that leads outside"),
    ("list-nul-byte", "list_dir", {"path": "notes\x00"}, ToolError, "NUL byte"),
]


@pytest.mark.parametrize(("name", "arguments", "error", "text"), [c[1:] for c in ESCAPES], ids=[c[0] for c in ESCAPES])
def test_paths_that_escape_the_root_are_refused(workspace: Path, name, arguments, error, text):
    outside = workspace.parent / "outside"
    before = sorted(p.name for p in outside.iterdir())
    arguments = {k: v.replace("{outside}", str(outside)) for k, v in arguments.items()}
    with pytest.raises(error, match=text) as caught:
        tools_for(workspace)[name](**arguments)
    if error is PathOutsideRoot:
        assert repr(arguments["path"]) in str(caught.value) and str(workspace) in str(caught.value)
    assert sorted(p.name for p in outside.iterdir()) == before  # nothing was written outside
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"


# (tool, arguments, expected result)
INSIDE = [
    ("read-nested", "read_file", {"path": "notes/deep/b.txt"}, "deep text"),
    ("read-dotdot-inside", "read_file", {"path": "notes/deep/../a.txt"}, "hello"),
    ("read-absolute-inside", "read_file", {"path": "{root}/notes/a.txt"}, "hello"),
    ("read-symlink-inside", "read_file", {"path": "inner.txt"}, "hello"),
    (
        "write-nested",
        "write_file",
        {"path": "new/dir/c.txt", "content": "hi there"},
        "wrote 8 characters to new/dir/c.txt",
    ),
    (
        "write-absolute-inside",
        "write_file",
        {"path": "{root}/notes/d.txt", "content": "é"},
        "wrote 1 characters to notes/d.txt",
    ),
    (
        "list-root",
        "list_dir",
        {},
        (
            "./ (6 entries):\ndangling.txt@  (symlink)\nescape.txt@  (symlink)\ninner.txt@  (symlink)\nnotes/\n"
            "outdir@  (symlink)\nroot.txt  (4 bytes)"
        ),
    ),
    ("list-nested", "list_dir", {"path": "notes"}, "notes/ (2 entries):\na.txt  (5 bytes)\ndeep/"),
]


@pytest.mark.parametrize(("name", "arguments", "expected"), [c[1:] for c in INSIDE], ids=[c[0] for c in INSIDE])
def test_paths_inside_the_root_work(workspace: Path, name, arguments, expected):
    (workspace / "root.txt").write_text("root", encoding="utf-8")
    arguments = {k: v.replace("{root}", str(workspace)) for k, v in arguments.items()}
    assert tools_for(workspace)[name](**arguments) == expected
    if name == "write_file":
        written = workspace / expected.rsplit(" to ", 1)[1]
        assert written.read_text(encoding="utf-8") == arguments["content"]


def test_write_then_read_then_list_round_trip(workspace: Path):
    tools = tools_for(workspace)
    assert tools["write_file"]("todo/today.md", "line 1\nline 2\n") == "wrote 14 characters to todo/today.md"
    assert tools["read_file"]("todo/today.md") == "line 1\nline 2\n"
    assert tools["write_file"]("todo/today.md", "replaced") == "wrote 8 characters to todo/today.md"
    assert tools["read_file"]("todo/today.md") == "replaced"
    assert tools["list_dir"]("todo") == "todo/ (1 entries):\ntoday.md  (8 bytes)"


# (tool, arguments, text in the ToolError)
MISUSES = [
    ("read-missing", "read_file", {"path": "nope.txt"}, "no file 'nope.txt' in the workspace; call list_dir"),
    ("read-directory", "read_file", {"path": "notes"}, "'notes' is a folder; call list_dir('notes')"),
    ("read-root", "read_file", {"path": "."}, "'.' is a folder"),
    ("write-directory", "write_file", {"path": "notes", "content": "x"}, "'notes' is a directory"),
    ("write-under-a-file", "write_file", {"path": "notes/a.txt/x.txt", "content": "x"}, "part of the path is a file"),
    ("list-missing", "list_dir", {"path": "nope"}, "no folder 'nope' in the workspace"),
    ("list-a-file", "list_dir", {"path": "notes/a.txt"}, "is a file, not a folder; call read_file('notes/a.txt')"),
]


@pytest.mark.parametrize(("name", "arguments", "text"), [c[1:] for c in MISUSES], ids=[c[0] for c in MISUSES])
def test_misuse_is_a_clear_tool_error(workspace: Path, name, arguments, text):
    with pytest.raises(ToolError) as caught:
        tools_for(workspace)[name](**arguments)
    assert text in str(caught.value)
    assert type(caught.value) is ToolError


def test_read_file_is_size_capped_with_a_note(workspace: Path):
    (workspace / "big.txt").write_text("é" * 100, encoding="utf-8")  # 200 bytes
    text = tools_for(workspace, max_bytes=51)["read_file"]("big.txt")
    assert text == "é" * 25 + "\n[truncated: showed the first 51 of 200 bytes]"  # the split character is dropped
    assert tools_for(workspace, max_bytes=200)["read_file"]("big.txt") == "é" * 100


def test_read_file_replaces_undecodable_bytes(workspace: Path):
    (workspace / "bin.dat").write_bytes(b"ok\xff\xfeok")
    assert tools_for(workspace)["read_file"]("bin.dat") == "ok\ufffd\ufffdok"


def test_list_dir_caps_the_entry_count(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    from executus_nb.tool.common import files

    monkeypatch.setattr(files, "MAX_ENTRIES", 3)
    many = workspace / "many"
    many.mkdir()
    for i in range(5):
        (many / f"f{i}").write_text("", encoding="utf-8")
    assert tools_for(workspace)["list_dir"]("many") == (
        "many/ (5 entries):\nf0  (0 bytes)\nf1  (0 bytes)\nf2  (0 bytes)\n[... and 2 more entries not shown]"
    )
    (workspace / "empty").mkdir()
    assert tools_for(workspace)["list_dir"]("empty") == "empty/ is empty"


def test_a_root_given_through_a_symlink_is_resolved(workspace: Path):
    link = workspace.parent / "root-link"
    link.symlink_to(workspace, target_is_directory=True)
    tools = tools_for(link)
    assert tools["read_file"](f"{link}/notes/a.txt") == "hello"
    with pytest.raises(PathOutsideRoot):
        tools["read_file"]("escape.txt")


# -- calculator --------------------------------------------------------------------------

VALID = [
    ("precedence", "2*(3+4)", 14),
    ("int-division", "7 // 2", 3),
    ("true-division", "7 / 2", 3.5),
    ("modulo", "-7 % 3", 2),
    ("power", "2 ** 10", 1024),
    ("right-assoc-power", "2 ** 3 ** 2", 512),
    ("negative-power", "2 ** -2", 0.25),
    ("unary", "-(-3) + +2", 5),
    ("float-literal", "1.5e3 + .5", 1500.5),
    ("sqrt", "sqrt(16)", 4.0),
    ("log-base", "log(8, 2)", 3.0),
    ("log-natural", "log(e)", 1.0),
    ("trig", "sin(pi / 2) + cos(0) + tan(0)", 2.0),
    ("exp", "exp(0)", 1.0),
    ("abs", "abs(-4.5)", 4.5),
    ("round", "round(2.567, 2)", 2.57),
    ("round-int", "round(2.5)", 2),
    ("min-max", "max(1, 7, 3) - min(4, 2)", 5),
    ("whitespace", "  1 +\t2  ", 3),
    ("long-sum", "+".join(["1"] * 200), 200),
    ("big-but-bounded-int", "2 ** 4000 // 2 ** 3999", 2),
]


@pytest.mark.parametrize(("expression", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_calculator_evaluates_arithmetic(expression: str, expected):
    result = calculator(expression)
    assert result == pytest.approx(expected) and type(result) is type(expected)


INVALID = [
    ("import", "__import__('os')", "'__import__' is not an allowed function"),
    ("import-system", "__import__('os').system('echo hi')", "attribute access ('.system') is not allowed"),
    ("attribute", "(1).real", "attribute access ('.real') is not allowed"),
    ("dunder-attribute", "().__class__.__bases__", "attribute access"),
    ("unknown-name", "x + 1", "unknown name 'x'"),
    ("builtin-not-whitelisted", "pow(2, 3)", "'pow' is not an allowed function"),
    ("math-not-whitelisted", "factorial(5)", "'factorial' is not an allowed function"),
    ("function-uncalled", "sqrt", "sqrt is a function; call it"),
    ("lambda", "(lambda: 1)()", "'lambda: 1' is not an allowed function"),
    ("bare-lambda", "lambda: 1", "Lambda expressions are not allowed"),
    ("list-comprehension", "[x for x in range(3)]", "ListComp expressions are not allowed"),
    ("generator", "sum(x for x in range(3))", "'sum' is not an allowed function"),
    ("string", "'a' * 3", "'a' is not a number"),
    ("bool", "True + 1", "True is not a number"),
    ("complex-literal", "1j * 2", "1j is not a number"),
    ("comparison", "1 < 2", "Compare expressions are not allowed"),
    ("caret", "2 ^ 3", "^ is not supported; write powers with **"),
    ("keyword-argument", "round(2.5, ndigits=1)", "plain positional arguments only"),
    ("arity", "sqrt(1, 2)", "sqrt() takes 1 argument(s), got 2"),
    ("huge-power", "9**9**9", "is too large"),
    ("huge-power-chain", "2**4096", "is too large"),
    ("huge-product", "(2**4000) * (2**4000)", "is too large"),
    ("huge-round-digits", "round(5, -10**9)", "round()'s second argument"),
    ("float-overflow", "10.0 ** 400", "overflows"),
    ("exp-overflow", "exp(1000)", "overflows"),
    ("infinite", "1e309", "not evaluate to a finite number"),
    ("complex-result", "(-8) ** (1/3)", "complex number"),
    ("division-by-zero", "1 / 0", "divides by zero"),
    ("floor-division-by-zero", "1 // 0", "divides by zero"),
    ("modulo-by-zero", "5 % 0", "divides by zero"),
    ("domain", "sqrt(-1)", "outside a function's domain"),
    ("syntax", "2 +", "cannot parse"),
    ("statement", "import os", "cannot parse"),
    ("nul-byte", "1\x00+1", "cannot parse"),
    ("too-long", "1+" * 300 + "1", "the limit is 500"),
    ("deep-unary", "-" * 60 + "1", "nested more than 50 levels"),
    ("deep-parentheses", "(" * 210 + "1" + ")" * 210, "cannot parse"),
]


@pytest.mark.parametrize(("expression", "text"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_calculator_refuses_anything_but_bounded_arithmetic(expression: str, text: str):
    with pytest.raises(ToolError) as caught:
        calculator(expression)
    assert text in str(caught.value)


def test_calculator_never_evaluates_code(monkeypatch: pytest.MonkeyPatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec/compile must not be used")

    for name in ("eval", "exec"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert calculator("2 ** 8 + sqrt(9)") == 259.0


# -- current_time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "offset"),
    [("UTC", "+00:00"), ("Asia/Kolkata", "+05:30"), ("America/New_York", None)],
    ids=["utc", "half-hour-offset", "dst-zone"],
)
def test_current_time_is_iso_8601_in_the_zone(zone: str, offset: str | None):
    text = current_time(zone)
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None and moment.microsecond == 0
    assert abs(moment - datetime.now(moment.tzinfo)) < timedelta(seconds=5)
    if offset is not None:
        assert text.endswith(offset)


def test_current_time_defaults_to_utc():
    assert current_time().endswith("+00:00")


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "", "UTC\x00"],
    ids=["unknown", "traversal", "absolute", "empty", "nul-byte"],
)
def test_current_time_refuses_unknown_zones(zone: str):
    with pytest.raises(ToolError, match="unknown time zone") as caught:
        current_time(zone)
    assert repr(zone) in str(caught.value)


# -- web_fetch ---------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/page":
            self._send(200, "text/html; charset=utf-8", b"<html><body><h1>Title</h1><p>Body text.</p></body></html>")
        elif self.path == "/big":
            self._send(200, "text/plain", b"a" * 5000)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/page")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, "text/plain", b"not here")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[str] = []


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


LOCAL = make_web_fetch(allow_private=["127.0.0.1"])


def test_web_fetch_returns_readable_text_and_the_final_url(server: Server):
    text = asyncio.run(LOCAL(url(server, "/moved")))
    assert text == f"URL: {url(server, '/page')}\nStatus: 200 (text/html)\n\nTitle\n\nBody text."
    assert server.seen == ["/moved", "/page"]


def test_web_fetch_notes_truncation(server: Server):
    small = make_web_fetch(allow_private=["127.0.0.1"], max_bytes=100, name="small_fetch")
    assert small.name == "small_fetch"
    text = asyncio.run(small(url(server, "/big")))
    assert text == (
        f"URL: {url(server, '/big')}\nStatus: 200 (text/plain)\n"
        "[truncated: only the first 100 bytes of the page were read]\n\n" + "a" * 100
    )


def test_web_fetch_reports_a_non_2xx_status(server: Server):
    assert "Status: 404 (text/plain)\n\nnot here" in asyncio.run(LOCAL(url(server, "/nothing")))


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "loopback", "file:///etc/passwd"],
    ids=["metadata", "loopback", "file-scheme"],
)
def test_plain_web_fetch_refuses_private_targets(server: Server, target: str):
    target = url(server, "/page") if target == "loopback" else target
    with pytest.raises(SSRFBlocked):
        asyncio.run(web_fetch(target))
    assert server.seen == []


def test_every_redirect_hop_goes_through_the_guard(server: Server):
    with pytest.raises(SSRFBlocked, match="metadata"):
        asyncio.run(LOCAL(url(server, "/to-metadata")))
    assert server.seen == ["/to-metadata"]


@pytest.mark.parametrize(
    "kwargs", [{"allow_private": ["not a host!"]}, {"max_bytes": 0}], ids=["bad-allow-list", "bad-max-bytes"]
)
def test_make_web_fetch_checks_its_configuration(kwargs: dict):
    with pytest.raises(ConfigError):
        make_web_fetch(**kwargs)


# -- through an agent run ----------------------------------------------------------------


def run_agent(tools: list, *turns):  # the first run in a process pays the litellm import
    model = sim.scripted([*turns, sim.reply("done")])
    return Executor().run(Agent(name="t", tools=tools, model=model), "go").wait(timeout=120, quiet=True)


def test_calculator_in_an_agent_run():
    model = sim.scripted([sim.call("calculator", expression="2*(3+4)"), sim.reply("14")])
    result = Executor().run(Agent(name="c", tools=[calculator], model=model), "2*(3+4)?").wait(timeout=120, quiet=True)
    assert result.status is RunStatus.SUCCEEDED
    assert (result.steps[1].name, result.steps[1].result) == ("calculator", "14")
    assert result.output == "14"


def test_a_calculator_refusal_reaches_the_model_as_an_error():
    result = run_agent([calculator], sim.call("calculator", expression="__import__('os')"))
    step = result.steps[1]
    assert (step.ok, step.error_type) == (False, "ToolError")
    assert step.result.startswith("Error: ToolError: '__import__' is not an allowed function")


def test_current_time_in_an_agent_run():
    result = run_agent([current_time], sim.call("current_time", timezone="Europe/Paris"))
    assert result.steps[1].ok
    assert datetime.fromisoformat(result.steps[1].result).tzinfo is not None


def test_file_tools_in_an_agent_run(workspace: Path):
    turns = [
        sim.call("list_dir", path="notes"),
        sim.call("read_file", path="notes/a.txt"),
        sim.call("read_file", path="../outside/secret.txt"),
    ]
    result = run_agent(file_tools(workspace), *turns)
    assert result.status is RunStatus.SUCCEEDED
    tool_steps = [s for s in result.steps if s.kind == "tool"]
    assert tool_steps[0].result == "notes/ (2 entries):\na.txt  (5 bytes)\ndeep/"
    assert tool_steps[1].result == "hello"
    assert (tool_steps[2].ok, tool_steps[2].error_type) == (False, "PathOutsideRoot")
    assert "secret" not in tool_steps[2].result.replace("secret.txt", "")


def test_web_fetch_in_an_agent_run(server: Server):
    result = run_agent(
        [LOCAL, make_web_fetch(name="public_fetch")],
        sim.call("web_fetch", url=url(server, "/page")),
        sim.call("public_fetch", url=url(server, "/page")),
    )
    fetched, refused = [s for s in result.steps if s.kind == "tool"]
    assert fetched.ok and fetched.result.endswith("Title\n\nBody text.")
    assert (refused.ok, refused.error_type) == (False, "SSRFBlocked")
    assert "loopback" in refused.result
    assert server.seen == ["/page"]
