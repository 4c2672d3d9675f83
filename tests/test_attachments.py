"""Attachments: files and images staged with ``executor.attach`` (or ``run(..., attachments=[...])``) reach the
model as content parts after the prompt's text; too large, unsupported or unreadable ones are refused before
any run is made."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import struct
import threading
import zlib
from datetime import datetime, timedelta

import pytest

from executus_nb import Agent, Attachment, AttachmentError, ConfigError, Executor, Pipeline, UserError, sim
from executus_nb.run import attach as attach_module
from executus_nb.run.attach import as_attachment
from tests.waiting import WAIT

_names = itertools.count()


def tiny_png() -> bytes:
    """A valid 1×1 PNG, built byte by byte."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG = tiny_png()
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class Recorder:
    """A sim model that records the last user message of every request it receives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: list[object] = []
        self.model = sim.function(self, name=f"attach-{next(_names)}")

    def __call__(self, messages, tools):
        with self.lock:
            self.users.append(next(m["content"] for m in reversed(messages) if m["role"] == "user"))
        return sim.reply("seen")


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def ex():
    with Executor() as executor:
        yield executor


def test_an_attached_image_reaches_the_model_after_the_prompt_text(ex, rec, tmp_path):
    path = tmp_path / "dot.png"
    path.write_bytes(PNG)
    staged = ex.attach(path)
    assert (staged.name, staged.mime, staged.size) == ("dot.png", "image/png", len(PNG))
    assert ex.pending_attachments == [staged]
    result = ex.run(Agent(model=rec.model), "What is in this picture?").wait(WAIT, quiet=True)
    assert result.ok
    expected = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
    ]
    assert rec.users == [expected]
    assert result.messages[-2] == {"role": "user", "content": expected}  # the conversation keeps the parts


def test_a_pdf_a_text_file_and_json_for_one_run(ex, rec, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline two\n", encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text('{"a": 1}', encoding="utf-8")
    run = ex.run(Agent(model=rec.model), "Summarise these", attachments=[PDF, notes, str(config)])
    assert run.wait(WAIT, quiet=True).ok
    assert rec.users == [
        [
            {"type": "text", "text": "Summarise these"},
            {"type": "file", "file": {"file_data": data_url("application/pdf", PDF), "filename": "attachment.pdf"}},
            {"type": "text", "text": "notes.txt:\nline one\nline two\n"},
            {"type": "text", "text": 'config.json:\n{"a": 1}'},
        ]
    ]
    assert ex.pending_attachments == []  # attachments= are this run's only


@pytest.mark.parametrize(
    "data, mime",
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (PDF, "application/pdf"),
        ("café au lait".encode(), "text/plain"),
    ],
)
def test_bytes_without_a_type_are_known_by_their_first_bytes(data, mime):
    assert as_attachment(data).mime == mime


def test_a_given_type_wins_and_names_the_part(rec):
    attachment = as_attachment(b"a,b\n1,2\n", "text/csv; charset=utf-8", name="table.csv")
    assert (attachment.mime, attachment.part) == ("text/csv", {"type": "text", "text": "table.csv:\na,b\n1,2\n"})
    assert "data" not in repr(attachment) and "size=8" in repr(attachment)


def test_an_oversized_file_is_refused_by_its_size_before_it_is_read(rec, tmp_path, monkeypatch):
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:
        f.truncate(50_000_000)  # sparse: 50 MB on paper, nothing on disk
    opened: list[str] = []
    real_open = os.open

    def spying_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(attach_module.os, "open", spying_open)
    with Executor() as ex:  # the default limit: 20 MB
        with pytest.raises(AttachmentError, match=r"50,000,000 bytes.*20,000,000.*max_attachment_bytes"):
            ex.attach(huge)
        with pytest.raises(AttachmentError, match=r"50,000,000 bytes"):
            ex.run(Agent(model=rec.model), "look", attachments=[huge])
        assert ex.runs == [] and ex.pending_attachments == []
    assert rec.users == []  # no model call
    assert str(huge) not in opened


def test_the_limit_is_the_executors(rec):
    with Executor(max_attachment_bytes=10) as ex:
        with pytest.raises(AttachmentError, match=r"11 bytes, over the attachment limit of 10"):
            ex.run(Agent(model=rec.model), "look", attachments=[b"x" * 11])
        assert ex.runs == []
        assert ex.run(Agent(model=rec.model), "look", attachments=[b"x" * 10]).wait(WAIT, quiet=True).ok
    for bad in (0, -1, 1.5, True, "20MB"):
        with pytest.raises(ConfigError, match="max_attachment_bytes"):
            Executor(max_attachment_bytes=bad)


@pytest.mark.parametrize(
    "name, data, mime, says",
    [
        ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00", None, "setup.exe is application/"),
        ("bundle.zip", b"PK\x03\x04", None, "bundle.zip is application/zip"),
        ("song.mp3", b"ID3\x03\x00", None, "song.mp3 is audio/mpeg"),
        ("clip.mp4", b"\x00\x00\x00\x18ftypmp42", None, "clip.mp4 is video/mp4"),
        ("noise", b"\x00\xfe\xff\x80", None, "noise is application/octet-stream"),
        ("voice", b"ID3", "audio/wav", "voice is audio/wav"),
    ],
)
def test_an_unsupported_type_is_refused_naming_it_and_the_supported_ones(ex, rec, tmp_path, name, data, mime, says):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AttachmentError, match=says) as info:
        ex.attach(path, mime)
    assert "image/png" in str(info.value) and "application/pdf" in str(info.value)
    if mime is None:
        with pytest.raises(AttachmentError, match=says):
            ex.run(Agent(model=rec.model), "look", attachments=[path])
    assert ex.runs == [] and rec.users == [] and ex.pending_attachments == []


def test_text_that_is_not_utf8_is_refused(ex):
    with pytest.raises(AttachmentError, match="not UTF-8"):
        ex.attach(b"\xff\xfe\x00bad", "text/plain")


def test_a_directory_a_missing_path_and_a_fifo_are_refused(ex, tmp_path):
    with pytest.raises(AttachmentError, match="is a directory"):
        ex.attach(tmp_path)
    with pytest.raises(AttachmentError, match="no file to attach at .*missing.png"):
        ex.attach(tmp_path / "missing.png")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.txt"
        os.mkfifo(fifo)
        with pytest.raises(AttachmentError, match="not a regular file"):  # refused, not blocked on
            ex.attach(fifo)
    with pytest.raises(AttachmentError, match="a file path or bytes, not int"):
        ex.attach(42)
    with pytest.raises(AttachmentError, match="attachments= is a list"):
        ex.run(Agent(model=sim.echo()), "x", attachments=b"bytes")
    assert ex.pending_attachments == [] and ex.runs == []


def test_staged_attachments_go_to_exactly_the_next_run(ex, rec):
    ex.attach(b"first note")
    ex.attach(PNG)
    agent = Agent(model=rec.model)
    assert ex.run(agent, "one").wait(WAIT, quiet=True).ok
    assert ex.pending_attachments == []
    assert ex.run(agent, "two").wait(WAIT, quiet=True).ok
    assert rec.users[0] == [
        {"type": "text", "text": "one"},
        {"type": "text", "text": "attachment.txt:\nfirst note"},
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
    ]
    assert rec.users[1] == "two"


def test_a_run_that_cannot_start_leaves_the_staged_attachments(ex, rec):
    staged = ex.attach(PNG)
    with pytest.raises(ConfigError, match="tier 'missing'"):
        ex.run(Agent(tier="missing"), "look")
    with pytest.raises(UserError, match="empty list"):
        ex.run(Agent(model=rec.model), [])
    with pytest.raises(AttachmentError):
        ex.run(Agent(model=rec.model), "look", attachments=[b"\x00\xfe\xff"])
    assert ex.pending_attachments == [staged]
    assert ex.run(Agent(model=rec.model), "look").wait(WAIT, quiet=True).ok
    assert rec.users[0][-1]["type"] == "image_url"


def test_staged_and_per_run_attachments_together(ex, rec):
    ex.attach(b"staged", name="a.txt")
    ex.run(Agent(model=rec.model), [{"type": "text", "text": "parts"}], attachments=[b"given"]).wait(WAIT, quiet=True)
    assert rec.users[0] == [
        {"type": "text", "text": "parts"},
        {"type": "text", "text": "a.txt:\nstaged"},
        {"type": "text", "text": "attachment.txt:\ngiven"},
    ]


def test_clear_and_the_pending_list_is_a_copy(ex):
    ex.attach(b"one")
    pending = ex.pending_attachments
    pending.clear()
    assert len(ex.pending_attachments) == 1
    ex.clear_attachments()
    assert ex.pending_attachments == []


def test_a_chat_turn_and_arun_take_them(ex, rec):
    agent = Agent(model=rec.model)
    chat = ex.chat(agent)
    ex.attach(b"for the chat")
    chat.send("turn one").wait(WAIT, quiet=True)
    assert rec.users[-1][-1] == {"type": "text", "text": "attachment.txt:\nfor the chat"}

    async def main():
        ex.attach(PDF, name="report.pdf")
        return await ex.arun(agent, "read it")

    assert asyncio.run(main()).ok
    assert rec.users[-1][-1]["file"]["filename"] == "report.pdf"
    assert ex.pending_attachments == []


def test_fanout_cells_and_pipeline_phases_leave_them_for_the_next_run(ex, rec):
    staged = ex.attach(PNG)
    agent = Agent(model=rec.model)
    ex.fanout(agent, ["a", "b"], models=[rec.model]).wait(WAIT)
    ex.run(Pipeline([agent, agent]), "draft").wait(WAIT, quiet=True)
    assert ex.pending_attachments == [staged]
    assert all(isinstance(user, str) for user in rec.users)
    ex.run(agent, "now").wait(WAIT, quiet=True)
    assert rec.users[-1][-1]["type"] == "image_url"


def test_a_pipelines_attachments_go_to_its_first_phase(ex, rec):
    agent = Agent(model=rec.model)
    ex.run(Pipeline([agent, agent]), "draft", attachments=[b"brief"]).wait(WAIT, quiet=True)
    assert rec.users[0] == [{"type": "text", "text": "draft"}, {"type": "text", "text": "attachment.txt:\nbrief"}]
    assert rec.users[1] == "seen"  # the second phase is given the first one's output


def test_one_staged_attachment_goes_to_one_of_many_runs_started_at_once(ex, rec):
    ex.attach(PNG)
    agent = Agent(model=rec.model)
    start = threading.Barrier(16)
    runs = []
    lock = threading.Lock()

    def starter(i: int) -> None:
        start.wait(WAIT)
        run = ex.run(agent, f"run {i}")
        with lock:
            runs.append(run)

    threads = [threading.Thread(target=starter, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    for run in runs:
        run.wait(WAIT, quiet=True)
    with_image = [run for run in runs if isinstance(run.prompt, list)]
    assert len(runs) == 16 and len(with_image) == 1


def test_an_attachment_given_to_run_is_checked_again(ex, rec):
    forged = Attachment("tool.exe", "application/x-msdownload", b"MZ")
    with pytest.raises(AttachmentError, match="tool.exe is application/x-msdownload"):
        ex.run(Agent(model=rec.model), "x", attachments=[forged])
    assert ex.runs == []


def test_scheduled_runs_and_forks_leave_them(ex, rec):
    agent = Agent(model=rec.model)
    first = ex.run(agent, "before").wait(WAIT, quiet=True)
    staged = ex.attach(PNG)
    schedule = ex.schedule(agent, "tick", at=datetime.now() - timedelta(seconds=1))  # due already: runs at once
    (scheduled,) = schedule.wait_for_runs(1, WAIT)
    assert scheduled.prompt == "tick"
    fork = ex.fork(first, at_step=0)
    assert fork.wait(WAIT, quiet=True).ok
    assert ex.pending_attachments == [staged]
    assert all(isinstance(user, str) for user in rec.users)
