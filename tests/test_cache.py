"""The response cache is an optimisation: every fault is a miss with one warning, never a failed run.

Also: keys separate endpoints and credentials, no key is stored, and ``cache=`` takes a folder.
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from executus_nb import Agent, ConfigError, Executor, RunStatus, sim
from executus_nb.errors import CacheWarning
from executus_nb.model.cache import BUSY_TIMEOUT_S, DB_NAME, ResponseCache
from tests.openai_server import OpenAIServer


class Counting:
    """A sim model that answers "answer <n>" and counts how often the model was really called."""

    def __init__(self, name: str):
        self.calls = 0
        self.model = sim.function(self._answer, name=name)

    def _answer(self, messages: list[dict], tools: list[dict]) -> Any:
        self.calls += 1
        return sim.reply(f"the answer to {messages[-1]['content']}")


def run_once(executor: Executor, model: str, prompt: str = "q"):
    return executor.run(Agent(name="cached", model=model), prompt).wait(timeout=60, quiet=True)


def cache_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, CacheWarning)]


def rows(path: Path) -> list[tuple[str, Any]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT key, entry FROM responses").fetchall()


def set_every_entry(path: Path, value: Any) -> None:
    db = sqlite3.connect(path)
    db.execute("UPDATE responses SET entry = ?", (value,))
    db.commit()
    db.close()


@pytest.fixture
def populated(tmp_path):
    """A cache file holding one answered call, and the model that answered it."""
    path = tmp_path / "cache.sqlite"
    counting = Counting("cache-fault-model")
    assert run_once(Executor(cache=path), counting.model).output == "the answer to q"
    assert counting.calls == 1 and len(rows(path)) == 1
    return path, counting


# -- corrupt or wrongly shaped entries ------------------------------------------------------

BAD_ENTRIES = {
    "not json": "{not json",
    "truncated json": '{"message": {"role": "assistant", "content": "x"}, "prompt_tok',
    "empty object": "{}",
    "a list": "[1, 2]",
    "null": "null",
    "missing token counts": '{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}',
    "message is a string": '{"message": "x", "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1}',
    "tokens are text": '{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop", '
    '"prompt_tokens": "many", "completion_tokens": 1}',
    "negative tokens": '{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop", '
    '"prompt_tokens": -5, "completion_tokens": 1}',
    "tool calls without function": '{"message": {"role": "assistant", "content": null, "tool_calls": [{"id": "c"}]},'
    ' "finish_reason": "tool_calls", "prompt_tokens": 1, "completion_tokens": 1}',
    "content is a number": '{"message": {"role": "assistant", "content": 42}, "finish_reason": "stop", '
    '"prompt_tokens": 1, "completion_tokens": 1}',
    "binary blob": b"\x00\xff\x10garbage",
    "an integer": 7,
}


@pytest.mark.parametrize("bad", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_a_corrupt_or_misshapen_entry_is_a_miss_with_one_warning_and_is_replaced(populated, bad):
    path, counting = populated
    set_every_entry(path, bad)
    executor = Executor(cache=path)
    with pytest.warns(CacheWarning) as record:
        result = run_once(executor, counting.model)
    assert result.status is RunStatus.SUCCEEDED and result.output == "the answer to q"
    assert counting.calls == 2  # the model answered instead
    assert len(cache_warnings(record.list)) == 1
    assert "could not read" in cache_warnings(record.list)[0]
    # The fresh answer replaced the bad row: the next identical call is a hit again, silently.
    assert run_once(executor, counting.model).output == "the answer to q"
    assert counting.calls == 2 and executor.steps_df().cached.tolist() == [False, True]


def test_a_table_of_another_shape_is_a_miss_not_a_failed_run(tmp_path):
    path = tmp_path / "foreign.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE responses (id INTEGER, payload BLOB)")
    counting = Counting("foreign-table-model")
    with pytest.warns(CacheWarning) as record:
        executor = Executor(cache=path)
        first, second = run_once(executor, counting.model), run_once(executor, counting.model)
    assert first.ok and second.ok and counting.calls == 2
    assert len(cache_warnings(record.list)) == 1  # said once, when the cache was opened


# -- an unusable database file -------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"this is not a database" * 50, b"SQLite format 3\x00" + b"\xff" * 4000], ids=["text", "damaged header"]
)
def test_a_garbage_cache_file_warns_once_and_every_call_goes_to_the_model(tmp_path, content):
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(content)
    counting = Counting("garbage-file-model")
    with pytest.warns(CacheWarning) as record:
        executor = Executor(cache=path)  # no raw sqlite3.DatabaseError
        results = [run_once(executor, counting.model) for _ in range(2)]
    assert [r.output for r in results] == ["the answer to q"] * 2 and counting.calls == 2
    messages = cache_warnings(record.list)
    assert len(messages) == 1 and str(path) in messages[0] and "delete the file" in messages[0]
    assert path.read_bytes() == content  # the user's file is left as it was
    assert "unusable" in repr(executor.cache) and len(executor.cache) == 0


# -- locks ---------------------------------------------------------------------------------


def test_a_locked_database_is_a_quick_miss_and_the_answer_is_kept(populated):
    path, counting = populated
    executor = Executor(cache=path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another kernel holds the database: no reads, no writes
    try:
        with pytest.warns(CacheWarning) as record:
            result = run_once(executor, counting.model)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.status is RunStatus.SUCCEEDED and result.output == "the answer to q"
    assert counting.calls == 2
    messages = cache_warnings(record.list)
    assert len(messages) == 1 and "locked" in messages[0]  # the read and the write fault are one warning
    assert BUSY_TIMEOUT_S <= 0.5  # sqlite's default waited 5 s, then failed the run (timed below)
    # The lock has passed: the cache works again.
    assert run_once(executor, counting.model).output == "the answer to q"
    assert counting.calls == 2


def test_a_lock_wait_is_short(populated):
    path, _ = populated
    cache, key = ResponseCache(path), rows(path)[0][0]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.warns(CacheWarning, match="locked"):
            assert cache.get(key) is None
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert waited < 1.0  # not sqlite's 5 s


def test_a_write_lock_after_the_model_answered_keeps_the_answer(tmp_path):
    path = tmp_path / "cache.sqlite"
    ResponseCache(path)  # an empty cache file
    counting = Counting("write-locked-model")
    executor = Executor(cache=path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # reads still work; writes are locked out
    holder.execute("INSERT INTO responses VALUES ('other', '{}')")
    try:
        with pytest.warns(CacheWarning) as record:
            result = run_once(executor, counting.model)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.status is RunStatus.SUCCEEDED and result.output == "the answer to q"
    assert counting.calls == 1 and result.usage.total_tokens > 0
    messages = cache_warnings(record.list)
    assert len(messages) == 1 and "could not write" in messages[0] and "answer was kept" in messages[0]
    assert rows(path) == []


# -- read-only, disk full ------------------------------------------------------------------


def test_a_read_only_cache_still_answers_hits_and_misses_still_run(populated):
    path, counting = populated
    executor = Executor(cache=path)
    executor.cache._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    assert run_once(executor, counting.model).output == "the answer to q"  # a hit, no warning
    assert counting.calls == 1
    with pytest.warns(CacheWarning) as record:
        result = run_once(executor, counting.model, prompt="a new question")
    assert result.output == "the answer to a new question" and counting.calls == 2
    messages = cache_warnings(record.list)
    assert len(messages) == 1 and "readonly" in messages[0]


class FullDisk:
    """A connection whose writes fail as a full disk makes them fail."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith(("INSERT", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_full_disk_is_one_warning_and_the_run_succeeds(tmp_path):
    counting = Counting("full-disk-model")
    executor = Executor(cache=tmp_path / "cache.sqlite")
    executor.cache._db = FullDisk(executor.cache._db)
    with pytest.warns(CacheWarning) as record:
        result = run_once(executor, counting.model)
    assert result.ok and result.output == "the answer to q" and counting.calls == 1
    messages = cache_warnings(record.list)
    assert len(messages) == 1 and "disk is full" in messages[0]
    with pytest.warns(CacheWarning, match="disk is full"):
        executor.cache.clear()  # a user's clear() reports the fault too, and does not raise


def test_an_unserialisable_call_is_not_cached_and_still_runs():
    cache = ResponseCache(None)
    with pytest.warns(CacheWarning, match="could not key"):
        assert cache.key("sim/x", [{"role": "user", "content": "hi"}], None, {"bad": CircularRef()}) is None
    assert cache.get(None) is None
    cache.put(None, {"message": {}})  # nothing happens
    assert len(cache) == 0


class CircularRef:
    def __str__(self) -> str:
        raise RuntimeError("cannot be shown")


# -- keys: endpoints and credentials ---------------------------------------------------------


def test_two_endpoints_with_the_same_model_name_never_share_entries(tmp_path):
    path = tmp_path / "cache.sqlite"
    with OpenAIServer(default="from server A") as a, OpenAIServer(default="from server B") as b:

        def agent(server: OpenAIServer, key: str = "sk-test-key-one") -> Agent:
            return Agent(name="ep", model={"model": "openai/test-model", "api_base": server.base_url, "api_key": key})

        executor = Executor(cache=path)
        first_a = executor.run(agent(a), "same").wait(timeout=60, quiet=True)
        first_b = executor.run(agent(b), "same").wait(timeout=60, quiet=True)
        assert (first_a.output, first_b.output) == ("from server A", "from server B")
        assert (a.count, b.count) == (1, 1)
        again = Executor(cache=path)  # from disk
        assert again.run(agent(a), "same").wait(timeout=60, quiet=True).output == "from server A"
        assert again.run(agent(b), "same").wait(timeout=60, quiet=True).output == "from server B"
        assert (a.count, b.count) == (1, 1)
        # Other credentials on the same endpoint are another key too.
        other_key = again.run(agent(a, "sk-test-key-two"), "same").wait(timeout=60, quiet=True)
        assert other_key.output == "from server A" and a.count == 2


def test_no_credential_is_stored_in_the_cache_file(tmp_path):
    path = tmp_path / "cache.sqlite"
    secret = "sk-live-0123456789abcdefSECRET"
    with OpenAIServer() as server:
        model = {
            "model": "openai/test-model",
            "api_base": server.base_url,
            "api_key": secret,
            "extra_headers": {"X-Api-Token": "header-secret-value-42"},
        }
        result = Executor(cache=path).run(Agent(name="k", model=model), "hi").wait(timeout=60, quiet=True)
    assert result.ok
    data = path.read_bytes()
    for needle in (secret, secret[:12], "header-secret-value-42"):
        assert needle.encode() not in data


# -- cache= takes a folder; an unusable path is a ConfigError ---------------------------------


def test_an_existing_folder_means_the_database_inside_it(tmp_path):
    counting = Counting("folder-model")
    first = Executor(cache=tmp_path)
    assert first.cache.path == tmp_path / DB_NAME
    run_once(first, counting.model)
    assert run_once(Executor(cache=str(tmp_path)), counting.model).output == "the answer to q"
    assert counting.calls == 1 and (tmp_path / DB_NAME).is_file()


def test_a_path_ending_with_a_separator_is_a_folder_made_on_demand(tmp_path):
    folder = tmp_path / "new" / "cache dir"
    executor = Executor(cache=str(folder) + os.sep)
    assert executor.cache.path == folder / DB_NAME and (folder / DB_NAME).is_file()
    counting = Counting("made-folder-model")
    run_once(executor, counting.model)
    assert len(executor.cache) == 1


def test_a_new_path_without_a_suffix_is_a_folder_one_with_a_suffix_a_file(tmp_path):
    folder = tmp_path / "some" / "folder"  # what a new user writes for "keep the cache in this folder"
    assert Executor(cache=str(folder)).cache.path == folder / DB_NAME and (folder / DB_NAME).is_file()
    assert Executor(cache=folder).cache.path == folder / DB_NAME  # now an existing folder
    a_file = tmp_path / "other" / "answers.db"
    assert Executor(cache=a_file).cache.path == a_file and a_file.is_file()


def test_unusable_cache_paths_are_config_errors_naming_them(tmp_path):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder")
    inside_a_file = a_file / "cache.sqlite"
    with pytest.raises(ConfigError, match="cache") as info:
        Executor(cache=inside_a_file)
    assert str(inside_a_file) in str(info.value)
    with pytest.raises(ConfigError) as info:
        Executor(cache=str(a_file) + os.sep)  # a folder is wanted, a file is there
    assert str(a_file) in str(info.value)
    blocked = tmp_path / "blocked"
    (blocked / DB_NAME).mkdir(parents=True)  # the database's own name is taken by a folder
    with pytest.raises(ConfigError) as info:
        Executor(cache=blocked)
    assert str(blocked / DB_NAME) in str(info.value)
    with pytest.raises(ConfigError, match="not a regular file") as info:
        Executor(cache=os.devnull)
    assert os.devnull in str(info.value)
    with pytest.raises(ConfigError, match="empty path"):
        Executor(cache="")
    with pytest.raises(ConfigError, match="NUL") as info:  # the OS would raise a bare ValueError
        Executor(cache=str(tmp_path / "a\0b.sqlite"))
    assert str(tmp_path) in str(info.value) and "a\\\\x00b.sqlite" in str(info.value)  # shown escaped
    with pytest.raises(ConfigError, match="cache must be"):
        Executor(cache=42)
