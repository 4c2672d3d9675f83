"""File tools under attack: a folder swapped for a symlink mid-call never lets a path escape,
and every OS failure is a ToolError that names the user's path, not the host's."""

from __future__ import annotations

import collections
import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from executus_nb.errors import PathOutsideRoot, ToolError
from executus_nb.tool.common import file_tools

RACE_MIN_S = 1.0  # race at least this long ...
RACE_MAX_S = 90.0  # ... and until every outcome has been seen, however busy the machine
DWELL_S = 0.002  # each state (real folder, link) is held this long, so the other thread meets it


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "a" / "d").mkdir(parents=True)
    (root / "a" / "d" / "f.txt").write_text("inside", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("OUTSIDE", encoding="utf-8")
    (outside / "marker-outside").write_text("", encoding="utf-8")
    return root, outside


def swapper(folder: Path, outside: Path, stop: threading.Event) -> threading.Thread:
    """Swap ``folder`` for a symlink to ``outside`` (absolute, then relative) and back, until stopped."""
    real = folder.with_name(folder.name + "_real")
    relative = os.path.relpath(outside, folder.parent)

    def clear() -> None:  # a write may have made a new folder in the moment the name was free
        if folder.is_symlink():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder, ignore_errors=True)

    def run() -> None:
        n = 0
        while not stop.is_set():
            os.rename(folder, real)
            while True:
                try:
                    os.symlink(outside if n % 2 else relative, folder)
                    break
                except FileExistsError:
                    clear()
            time.sleep(DWELL_S)  # the link stays long enough for calls to meet it
            os.unlink(folder)
            while True:
                try:
                    os.rename(real, folder)
                    break
                except OSError:  # ENOTEMPTY / EEXIST: a write made the folder again
                    clear()
            n += 1
            time.sleep(DWELL_S)  # and the real folder too, so both outcomes occur

    return threading.Thread(target=run, daemon=True)


def test_swapping_a_folder_for_a_symlink_never_escapes_the_root(layout):
    root, outside = layout
    tools = {t.name: t for t in file_tools(root)}
    read, write, listing = tools["read_file"], tools["write_file"], tools["list_dir"]
    before = sorted(p.name for p in outside.iterdir())
    outcomes: collections.Counter[str] = collections.Counter()
    escapes: list[str] = []
    stop = threading.Event()
    thread = swapper(root / "a" / "d", outside, stop)
    thread.start()
    try:
        start = time.monotonic()
        n = 0
        wanted = [f"{op} {outcome}" for op in ("read", "write", "list") for outcome in ("ok", "PathOutsideRoot")]
        while time.monotonic() < start + RACE_MAX_S and (
            time.monotonic() < start + RACE_MIN_S or min(outcomes[k] for k in wanted) == 0
        ):
            n += 1
            for op, call in (
                ("read", lambda: read("a/d/f.txt")),
                ("write", lambda n=n: write(f"a/d/w{n % 50}.txt", "x")),
                ("list", lambda: listing("a/d")),
            ):
                try:
                    result = call()
                except ToolError as exc:
                    outcomes[f"{op} {type(exc).__name__}"] += 1
                    continue
                outcomes[f"{op} ok"] += 1
                if "OUTSIDE" in result or "marker-outside" in result:
                    escapes.append(f"{op}: {result!r}")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert escapes == []
    assert sorted(p.name for p in outside.iterdir()) == before  # no write landed outside
    assert (outside / "f.txt").read_text(encoding="utf-8") == "OUTSIDE"
    # the race was real: each operation both worked inside and was refused while the link was there
    for op in ("read", "write", "list"):
        assert outcomes[f"{op} ok"] > 0, outcomes
        assert outcomes[f"{op} PathOutsideRoot"] > 0, outcomes


def tools_for(root: Path) -> dict:
    return {t.name: t for t in file_tools(root)}


def assert_no_host_path(exc: BaseException, root: Path) -> None:
    text = str(exc)
    assert str(root) not in text and str(root.parent) not in text
    assert exc.__cause__ is None and exc.__suppress_context__


LONG = "n" * 300


@pytest.mark.parametrize(
    ("name", "arguments", "text"),
    [
        ("write-long-name", {"path": f"{LONG}.txt", "content": "x"}, "a name in the path is too long"),
        ("write-long-folder", {"path": f"{LONG}/x.txt", "content": "x"}, "a name in the path is too long"),
        ("write-a-folder", {"path": "a/d", "content": "x"}, "'a/d' is a directory"),
        ("write-under-a-file", {"path": "a/d/f.txt/x.txt", "content": "x"}, "part of the path is a file"),
        ("write-trailing-slash", {"path": "a/d/", "content": "x"}, "is a directory"),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith(("{", "a ", "'")) else "",
)
def test_write_failures_are_tool_errors_without_the_host_path(layout, name, arguments, text):
    root, _ = layout
    with pytest.raises(ToolError) as caught:
        tools_for(root)["write_file"](**arguments)
    assert type(caught.value) is ToolError
    assert text in str(caught.value) and repr(arguments["path"]) in str(caught.value)
    assert_no_host_path(caught.value, root)


@pytest.mark.parametrize(
    ("tool_name", "arguments"),
    [
        ("read_file", {"path": f"{LONG}.txt"}),
        ("list_dir", {"path": LONG}),
        ("read_file", {"path": "loop"}),
    ],
)
def test_read_and_list_failures_are_tool_errors_without_the_host_path(layout, tool_name, arguments):
    root, _ = layout
    os.symlink("loop", root / "loop")  # a link to itself
    with pytest.raises(ToolError) as caught:
        tools_for(root)[tool_name](**arguments)
    assert type(caught.value) is ToolError
    assert repr(arguments["path"]) in str(caught.value)
    assert_no_host_path(caught.value, root)


def test_an_absolute_path_inside_the_root_is_shown_relative_in_errors(layout):
    root, _ = layout
    with pytest.raises(ToolError, match="cannot write 'a/" + LONG[:20]) as caught:
        tools_for(root)["write_file"](f"{root}/a/{LONG}", "x")
    assert_no_host_path(caught.value, root)
    with pytest.raises(ToolError, match="no file 'a/missing.txt' in the workspace") as caught:
        tools_for(root)["read_file"](f"{root}/a/missing.txt")
    assert_no_host_path(caught.value, root)


def test_a_permission_error_is_a_tool_error_without_the_host_path(layout, monkeypatch):
    root, _ = layout
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if path == "locked.txt":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(root / "a" / "locked.txt"))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(ToolError, match="cannot write 'a/locked.txt': Permission denied") as caught:
        tools_for(root)["write_file"]("a/locked.txt", "x")
    assert_no_host_path(caught.value, root)


def test_symlinks_inside_the_root_still_work_and_chains_out_are_refused(layout):
    root, outside = layout
    (root / "to-d").symlink_to("a/d")  # relative, inside
    (root / "abs-d").symlink_to(root / "a" / "d")  # absolute, inside
    (root / "a" / "up").symlink_to("../a/d")  # climbs and comes back
    (root / "hop").symlink_to("a/out")
    (root / "a" / "out").symlink_to("../../outside")  # a chain whose last link leaves
    tools = tools_for(root)
    assert tools["read_file"]("to-d/f.txt") == "inside"
    assert tools["read_file"]("abs-d/f.txt") == "inside"
    assert tools["read_file"]("a/up/f.txt") == "inside"
    assert tools["write_file"]("to-d/new.txt", "hi") == "wrote 2 characters to a/d/new.txt"
    assert (root / "a" / "d" / "new.txt").read_text(encoding="utf-8") == "hi"
    for path in ("hop/f.txt", "a/out/f.txt"):
        with pytest.raises(PathOutsideRoot, match="symlink that leads outside"):
            tools["read_file"](path)
    with pytest.raises(PathOutsideRoot):
        tools["write_file"]("hop/x.txt", "x")
    assert sorted(p.name for p in outside.iterdir()) == ["f.txt", "marker-outside"]


def test_a_folder_above_the_root_swapped_for_a_symlink_does_not_move_the_root(tmp_path):
    root = tmp_path / "p1" / "p2" / "root"
    root.mkdir(parents=True)
    (root / "f.txt").write_text("inside", encoding="utf-8")
    elsewhere = tmp_path / "evil" / "p2" / "root"
    elsewhere.mkdir(parents=True)
    (elsewhere / "f.txt").write_text("OUTSIDE", encoding="utf-8")
    tools = tools_for(root)
    assert tools["read_file"]("f.txt") == "inside"
    os.rename(tmp_path / "p1", tmp_path / "p1_real")  # two levels above the root, after the tools were made
    os.symlink("evil", tmp_path / "p1")
    for name, arguments in (
        ("read_file", {"path": "f.txt"}),
        ("write_file", {"path": "g.txt", "content": "x"}),
        ("list_dir", {}),
    ):
        with pytest.raises(PathOutsideRoot) as caught:
            tools[name](**arguments)
        assert_no_host_path(caught.value, root)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["f.txt"]


def test_swapping_a_folder_two_levels_up_never_escapes(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "f.txt").write_text("inside", encoding="utf-8")
    (outside / "b" / "c").mkdir(parents=True)
    (outside / "b" / "c" / "f.txt").write_text("OUTSIDE", encoding="utf-8")
    tools = tools_for(root)
    outcomes: collections.Counter[str] = collections.Counter()
    stop = threading.Event()
    thread = swapper(root / "a", outside, stop)
    thread.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for op, call in (
                ("read", lambda: tools["read_file"]("a/b/c/f.txt")),
                ("list", lambda: tools["list_dir"]("a/b/c")),
                ("write", lambda: tools["write_file"]("a/b/c/w.txt", "x")),
            ):
                try:
                    result = call()
                except ToolError as exc:
                    outcomes[f"{op} {type(exc).__name__}"] += 1
                    continue
                outcomes[f"{op} {'ESCAPE' if 'OUTSIDE' in result else 'ok'}"] += 1
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert not any("ESCAPE" in k for k in outcomes), outcomes
    assert sorted(p.name for p in (outside / "b" / "c").iterdir()) == ["f.txt"]  # no write landed outside
    assert outcomes["read ok"] > 0, outcomes


def test_a_hard_link_to_a_file_outside_is_never_written(layout):
    root, outside = layout
    os.link(outside / "f.txt", root / "a" / "linked.txt")  # another process linked an outside file in
    with pytest.raises(ToolError, match="other hard links") as caught:
        tools_for(root)["write_file"]("a/linked.txt", "overwritten")
    assert_no_host_path(caught.value, root)
    assert (outside / "f.txt").read_text(encoding="utf-8") == "OUTSIDE"  # neither truncated nor written
    assert tools_for(root)["write_file"]("a/d/f.txt", "new") == "wrote 3 characters to a/d/f.txt"
    assert (root / "a" / "d" / "f.txt").read_text(encoding="utf-8") == "new"  # a plain file is still replaced


def test_writing_a_fifo_is_a_tool_error_not_a_hang(layout):
    root, _ = layout
    os.mkfifo(root / "pipe")
    with pytest.raises(ToolError, match="'pipe'") as caught:
        tools_for(root)["write_file"]("pipe", "x")
    assert_no_host_path(caught.value, root)
