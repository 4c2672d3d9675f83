"""The executor's configuration: from code, environment variables or a TOML/YAML file, each setting from the
first that gives it, shown with its source by ``config_df()``; bad input names where it came from, never a secret."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from executus_nb import Agent, Budget, ConfigError, Executor, SQLiteStore
from executus_nb.model.cache import ResponseCache
from executus_nb.run.settings import ENV_KEYS, resolve_settings

WAIT = 120  # a guard against hanging, not a speed bound: the first run of a process imports litellm
SECRET = "sk-cfgfile-7f3a9c2e5b1d4680"  # a model table's api_key: never shown, never in an error

TOML = f"""
owner = "file-owner"
max_running = 3
store = "runs.db"
cache = "cache"
max_attachment_bytes = 2048

[model]
model = "openai/gpt-4o-mini"
api_key = "{SECRET}"

[tiers]
fast = ["sim/fast-a", "sim/fast-b"]
slow = {{ models = ["sim/slow"], temperature = 0.2 }}

[provider_limits]
openai = 2

[budget]
max_usd = 1.5
"""

YAML = f"""
owner: yaml-owner
max_running: 5
model:
  model: openai/gpt-4o-mini
  api_key: {SECRET}
tiers:
  fast: [sim/fast-a]
budget:
  max_steps: 7
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No EXECUTUS_ variable from the machine, and a working folder of the test's own (caches go there)."""
    for name in [*(f"EXECUTUS_{key.upper()}" for key in ENV_KEYS), "EXECUTUS_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("EXECUTUS_TIER_")]:
        monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sources(executor: Executor) -> dict[str, str]:
    df = executor.config_df()
    return dict(zip(df["key"], df["source"], strict=True))


def shown(executor: Executor) -> str:
    return executor.config_df().to_string() + repr(executor.config)


# -- no configuration ------------------------------------------------------------------------------


def test_an_executor_without_configuration_is_as_it_always_was():
    executor = Executor()
    assert executor.owner is None and executor.default_model is None and executor.tiers == {}
    assert executor.cache is None and executor.store is None and executor.budget is None
    assert math.isinf(executor.lanes.max_running) and executor.lanes.provider_limits == {}
    assert set(sources(executor).values()) == {"default"}
    assert list(executor.config_df().columns) == ["key", "value", "source"]
    assert executor.run(Agent(name="echo"), "hi").wait(timeout=WAIT).output  # the offline sim/ default model


def test_a_file_in_the_working_folder_is_not_read_unless_named():
    write(Path.cwd(), "executus.toml", 'owner = "found"\nmax_running = 1\n')
    executor = Executor()
    assert executor.owner is None and math.isinf(executor.lanes.max_running)


# -- each source -----------------------------------------------------------------------------------


def test_a_toml_file_sets_every_setting_paths_relative_to_the_file(tmp_path):
    config = write(tmp_path / "conf", "executus.toml", TOML)
    executor = Executor(config=config)
    assert executor.owner == "file-owner"
    assert executor.default_model.name == "openai/gpt-4o-mini"
    assert {n: [m.name for m in t.models] for n, t in executor.tiers.items()} == {
        "fast": ["sim/fast-a", "sim/fast-b"],
        "slow": ["sim/slow"],
    }
    assert executor.tiers["slow"].temperature == 0.2
    assert executor.lanes.max_running == 3 and executor.lanes.provider_limits == {"openai": 2}
    assert isinstance(executor.store, SQLiteStore) and executor.store.path == tmp_path / "conf" / "runs.db"
    assert isinstance(executor.cache, ResponseCache) and executor.cache.path.parent == tmp_path / "conf" / "cache"
    assert executor.budget == Budget(max_usd=1.5)
    assert executor.max_attachment_bytes == 2048
    assert sources(executor)["config"] == "code"
    assert {k: v for k, v in sources(executor).items() if v.startswith("file:")} == {
        key: f"file:{config}"
        for key in (
            "owner",
            "model",
            "tiers.fast",
            "tiers.slow",
            "max_running",
            "provider_limits",
            "cache",
            "store",
            "max_attachment_bytes",
            "budget",
        )
    }
    executor.store.close()


def test_a_yaml_file_is_read_by_its_suffix(tmp_path):
    executor = Executor(config=write(tmp_path, "executus.yaml", YAML))
    assert executor.owner == "yaml-owner" and executor.lanes.max_running == 5
    assert executor.default_model.name == "openai/gpt-4o-mini" and list(executor.tiers) == ["fast"]
    assert executor.budget == Budget(max_steps=7)
    assert sources(executor)["owner"] == f"file:{tmp_path / 'executus.yaml'}"


def test_environment_variables_set_each_setting(tmp_path, monkeypatch):
    (tmp_path / "skills" / "greet").mkdir(parents=True)
    (tmp_path / "skills" / "greet" / "SKILL.md").write_text("---\nname: greet\ndescription: Say hello.\n---\nHi.\n")
    env = {
        "EXECUTUS_OWNER": "env-owner",
        "EXECUTUS_MODEL": "sim/env-model",
        "EXECUTUS_MAX_RUNNING": "4",
        "EXECUTUS_STORE": str(tmp_path / "env.db"),
        "EXECUTUS_CACHE": "1",
        "EXECUTUS_AUDIT": str(tmp_path / "audit.jsonl"),
        "EXECUTUS_SKILLS": str(tmp_path / "skills"),
        "EXECUTUS_MAX_ATTACHMENT_BYTES": "4096",
        "EXECUTUS_TIER_FAST": "sim/a,sim/b",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    executor = Executor()  # the environment is read now, when the executor is made
    assert executor.owner == "env-owner" and executor.default_model.name == "sim/env-model"
    assert executor.lanes.max_running == 4 and executor.max_attachment_bytes == 4096
    assert executor.store.path == tmp_path / "env.db"
    assert isinstance(executor.cache, ResponseCache)  # the default cache, in the working folder
    assert list(executor.skills) == ["greet"]
    assert [type(s).__name__ for s in executor.ports.sinks] == ["AuditLog"]
    assert [m.name for m in executor.tiers["fast"].models] == ["sim/a", "sim/b"]
    expected = {key: f"env:EXECUTUS_{key.upper()}" for key in ENV_KEYS} | {"tiers.fast": "env:EXECUTUS_TIER_FAST"}
    assert {k: v for k, v in sources(executor).items() if v != "default"} == expected
    executor.store.close()
    monkeypatch.setenv("EXECUTUS_CACHE", "off")
    monkeypatch.delenv("EXECUTUS_STORE")
    assert Executor().cache is None


def test_code_is_given_as_it_always_was(tmp_path):
    store = SQLiteStore(tmp_path / "code.db")
    executor = Executor(
        owner="code-owner",
        model="sim/code",
        tiers={"t": ["sim/t"]},
        max_running=2,
        provider_limits={"sim": 1},
        store=store,
        budget=Budget(max_steps=3),
    )
    assert executor.store is store and executor.budget == Budget(max_steps=3)  # objects as given
    assert executor.config.owner == "code-owner" and executor.default_model.name == "sim/code"
    assert {k for k, v in sources(executor).items() if v == "code"} == {
        "owner",
        "model",
        "tiers.t",
        "max_running",
        "provider_limits",
        "store",
        "budget",
    }
    store.close()


def test_a_store_or_audit_path_in_code_is_opened_as_from_a_file(tmp_path):
    executor = Executor(store=tmp_path / "by-path.db", audit=str(tmp_path / "audit.jsonl"))
    assert isinstance(executor.store, SQLiteStore) and executor.store.path == tmp_path / "by-path.db"
    assert [type(s).__name__ for s in executor.ports.sinks] == ["AuditLog"]
    executor.run(Agent(name="echo"), "hi").wait(timeout=WAIT)
    executor.close()
    assert list(SQLiteStore(tmp_path / "by-path.db").runs_df()["agent"]) == ["echo"]


# -- precedence ------------------------------------------------------------------------------------


def test_code_wins_over_the_environment_which_wins_over_the_file(tmp_path, monkeypatch):
    config = write(tmp_path, "executus.toml", 'owner = "file"\nmax_running = 3\nmodel = "sim/file"\n')
    monkeypatch.setenv("EXECUTUS_OWNER", "env")
    monkeypatch.setenv("EXECUTUS_MAX_RUNNING", "4")
    executor = Executor(config=config, owner="code")
    assert (executor.owner, executor.lanes.max_running, executor.default_model.name) == ("code", 4, "sim/file")
    assert [sources(executor)[k] for k in ("owner", "max_running", "model")] == [
        "code",
        "env:EXECUTUS_MAX_RUNNING",
        f"file:{config}",
    ]
    assert Executor(config=config, max_running=9).lanes.max_running == 9  # code over env
    monkeypatch.delenv("EXECUTUS_MAX_RUNNING")
    assert Executor(config=config).lanes.max_running == 3  # the file, once nothing above gives it


def test_a_model_is_taken_whole_from_one_place_never_merged(tmp_path, monkeypatch):
    config = write(tmp_path, "executus.toml", f'[model]\nmodel = "openai/x"\napi_key = "{SECRET}"\n')
    monkeypatch.setenv("EXECUTUS_MODEL", "anthropic/y")
    assert Executor(config=config).default_model.params == {}  # the file's key never goes to another model
    assert Executor(config=config, model={"model": "openai/z"}).default_model.params == {}


def test_tiers_are_taken_per_name_from_the_environment_and_whole_from_code(tmp_path, monkeypatch):
    config = write(tmp_path, "executus.toml", '[tiers]\nfast = ["sim/file-fast"]\nslow = ["sim/file-slow"]\n')
    monkeypatch.setenv("EXECUTUS_TIER_FAST", "sim/env-fast")
    executor = Executor(config=config)
    assert {n: t.models[0].name for n, t in executor.tiers.items()} == {"fast": "sim/env-fast", "slow": "sim/file-slow"}
    assert sources(executor)["tiers.fast"] == "env:EXECUTUS_TIER_FAST"
    assert sources(executor)["tiers.slow"] == f"file:{config}"
    assert list(Executor(config=config, tiers={"only": ["sim/o"]}).tiers) == ["only"]


def test_a_tier_file_named_by_the_config_file_is_relative_to_it(tmp_path):
    write(tmp_path / "conf", "tiers.toml", '[tiers]\nfast = ["sim/from-tier-file"]\n')
    config = write(tmp_path / "conf", "executus.toml", 'tiers = "tiers.toml"\n')
    assert Executor(config=config).tiers["fast"].models[0].name == "sim/from-tier-file"


def test_executus_config_names_the_file_and_code_overrides_it(tmp_path, monkeypatch):
    by_env = write(tmp_path, "env.toml", 'owner = "named-by-env"\n')
    by_code = write(tmp_path, "code.toml", 'owner = "named-in-code"\n')
    monkeypatch.setenv("EXECUTUS_CONFIG", str(by_env))
    executor = Executor()
    assert executor.owner == "named-by-env" and executor.config.config == by_env
    assert sources(executor)["config"] == "env:EXECUTUS_CONFIG"
    assert sources(executor)["owner"] == f"file:{by_env}"
    assert Executor(config=by_code).owner == "named-in-code"


def test_the_environment_is_read_when_each_executor_is_made(monkeypatch):
    monkeypatch.setenv("EXECUTUS_OWNER", "first")
    first = Executor()
    monkeypatch.setenv("EXECUTUS_OWNER", "second")
    assert (first.owner, Executor().owner) == ("first", "second")


# -- bad input -------------------------------------------------------------------------------------


def test_an_unknown_key_in_the_file_names_the_file_the_key_and_the_closest_setting(tmp_path):
    config = write(tmp_path, "executus.toml", 'ownr = "x"\n')
    with pytest.raises(ConfigError, match=r"executus\.toml.*'ownr'.*did you mean 'owner'"):
        Executor(config=config)


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("EXECUTUS_MAX_RUNNING", "abc")
    with pytest.raises(ConfigError, match="EXECUTUS_MAX_RUNNING") as caught:
        Executor()
    assert "abc" not in str(caught.value)
    monkeypatch.setenv("EXECUTUS_MAX_RUNNING", "0")
    with pytest.raises(ConfigError, match="EXECUTUS_MAX_RUNNING.*greater than or equal to 1"):
        Executor()
    monkeypatch.delenv("EXECUTUS_MAX_RUNNING")
    monkeypatch.setenv("EXECUTUS_TIER_FAST", " , ")
    with pytest.raises(ConfigError, match="EXECUTUS_TIER_FAST"):
        Executor()


def test_a_bad_file_value_names_the_file_and_the_key(tmp_path):
    cases = {
        'max_running = "many"\n': "'max_running'",
        "max_running = true\n": "'max_running'",
        "[budget]\nmax_usd = -1\n": "'budget'.*max_usd",
        "[budget]\nmax_usds = 1\n": "'budget'.*did you mean 'max_usd'",
        '[tiers]\nfast = {modles = ["sim/a"]}\n': "'tiers'",
        "[provider_limits]\nopenai = 0\n": r"'provider_limits' \(openai\)",
    }
    for text, where in cases.items():
        config = write(tmp_path, "executus.toml", text)
        with pytest.raises(ConfigError, match=rf"executus\.toml.*{where}"):
            Executor(config=config)


def test_a_file_that_cannot_be_used_is_a_config_error_naming_it(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"a \.toml, \.yaml or \.yml file"):
        Executor(config=write(tmp_path, "executus.json", "{}"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        Executor(config=write(tmp_path, "broken.toml", "owner = \n"))
    with pytest.raises(ConfigError, match="must hold a table"):
        Executor(config=write(tmp_path, "list.yaml", "- a\n- b\n"))
    monkeypatch.setenv("EXECUTUS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml.*named by EXECUTUS_CONFIG.*cannot be read"):
        Executor()


def test_a_secret_in_the_files_model_table_is_never_shown(tmp_path):
    executor = Executor(config=write(tmp_path, "executus.toml", TOML))
    assert executor.default_model.params["api_key"] == SECRET  # used for the calls
    assert SECRET not in shown(executor) and SECRET[:12] not in shown(executor)
    assert "***" in executor.config_df().set_index("key").loc["model", "value"]
    executor.store.close()
    yaml = Executor(config=write(tmp_path, "executus.yaml", YAML))
    assert SECRET not in shown(yaml)
    tiers = write(tmp_path, "tiers.toml", f'[tiers.fast]\nmodels = [{{model = "openai/a", api_key = "{SECRET}"}}]\n')
    assert SECRET not in shown(Executor(tiers=tiers))


def test_a_secret_in_the_file_is_never_in_an_error(tmp_path):
    bad = {
        "bad-model.toml": f'[model]\nmodle = "openai/x"\napi_key = "{SECRET}"\n',
        "bad-type.toml": f'[model]\nmodel = "openai/x"\napi_key = "{SECRET}"\ntimeout_s = "soon"\n',
        "bad-other.toml": f'max_running = -1\n[model]\nmodel = "openai/x"\napi_key = "{SECRET}"\n',
        "bad-tier.toml": f'[tiers.fast]\nmodels = [{{model = "openai/a", api_key = "{SECRET}"}}]\ntemprature = 1\n',
        "bad-syntax.yaml": f"model: {{model: openai/x, api_key: {SECRET}\n",
        "bad-syntax.toml": f'[model]\napi_key = "{SECRET}\n',
    }
    for name, text in bad.items():
        with pytest.raises(ConfigError) as caught:
            Executor(config=write(tmp_path, name, text))
        assert name in str(caught.value)
        assert SECRET not in str(caught.value) and SECRET[:10] not in str(caught.value), name
        assert caught.value.__context__ is None or SECRET not in str(caught.value.__context__), name


def test_resolve_settings_takes_an_environment_of_its_own(tmp_path):
    settings = resolve_settings(environ={"EXECUTUS_OWNER": "given", "EXECUTUS_TIER_X": "sim/x", "EXECUTUS_OTHER": "?"})
    assert settings.owner == "given" and list(settings.tiers) == ["x"]
    assert settings.sources["owner"] == "env:EXECUTUS_OWNER"
    assert "owner='given'" in repr(settings)
    with pytest.raises(ConfigError, match="owner is who runs"):
        Executor(owner="")  # an empty owner in code is no one's name either
    with pytest.raises(ConfigError, match="owner is who runs"):
        Executor(owner=42)
