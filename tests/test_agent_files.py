"""Agents as files: ``Agent.from_file`` (TOML, YAML) and ``load_agents`` catalogues; a bad file names itself."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from executus_nb import (
    Agent,
    AgentCatalogue,
    Budget,
    ConfigError,
    Executor,
    RunResult,
    Skill,
    load_agents,
    sim,
    tool,
)
from executus_nb.agent_file import CODE_KEYS, FILE_KEYS
from executus_nb.errors import UnknownOptionError
from executus_nb.types.events import ToolCallFinished

WAIT = 120  # a guard against hanging, not a speed bound

ran: list[tuple[int, int]] = []


@tool
def file_add(a: int, b: int) -> int:
    """Add two integers."""
    ran.append((a, b))
    return a + b


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def run(executor: Executor, agent: Agent, **kw) -> tuple[RunResult, list]:
    handle = executor.run(agent, "go", **kw)
    return handle.wait(WAIT, quiet=True), handle.events


SCRIPT = sim.scripted([sim.call("file_add", a=2, b=3), sim.reply("five")], name="agent-file-adds")

TOML_AGENT = f"""
    name = "adder"
    instructions = "You add numbers.\\nUse the tool."
    tools = ["file_add"]
    skills = ["terse"]
    model = "{SCRIPT}"
    max_steps = 4
    max_runtime_s = 60.0
    temperature = 0.2
    max_tokens = 256
    stream = true
    max_tool_output_chars = 500
    output_retries = 1
    owner = "alice"
    tags = ["maths", "demo"]
    compaction = false
    context_tokens = 100000
    compaction_ratio = 0.5
    compaction_tier = "cheap"
    keep_last_turns = 3
    max_revisions = 2

    [budget]
    max_steps = 5
    max_tokens = 100000
    max_runtime_s = 120
"""

YAML_AGENT = f"""
    name: adder
    instructions: |
      You add numbers.
      Use the tool.
    tools: [file_add]
    skills: [terse]
    model: {SCRIPT}
    max_steps: 4
    max_runtime_s: 60.0
    temperature: 0.2
    max_tokens: 256
    stream: true
    max_tool_output_chars: 500
    output_retries: 1
    owner: alice
    tags: [maths, demo]
    compaction: false
    context_tokens: 100000
    compaction_ratio: 0.5
    compaction_tier: cheap
    keep_last_turns: 3
    max_revisions: 2
    budget:
      max_steps: 5
      max_tokens: 100000
      max_runtime_s: 120
"""

TERSE = Skill("terse", "Answer in one word.", "Never write a sentence.")


@pytest.mark.parametrize(("filename", "text"), [("adder.toml", TOML_AGENT), ("adder.yaml", YAML_AGENT)])
def test_an_agent_file_sets_every_key_and_its_tools_by_registered_name_run_on_sim(tmp_path, filename, text):
    ran.clear()
    agent = Agent.from_file(write(tmp_path, filename, text))
    assert agent.name == "adder" and agent.instructions.startswith("You add numbers.\nUse the tool.")
    assert agent.tools == ["file_add"] and agent.skills == ("terse",)
    assert agent.model is not None and agent.model.name == SCRIPT and agent.tier is None
    assert (agent.max_steps, agent.max_runtime_s, agent.temperature, agent.max_tokens) == (4, 60.0, 0.2, 256)
    assert (agent.stream, agent.max_tool_output_chars, agent.output_retries) == (True, 500, 1)
    assert (agent.owner, agent.tags) == ("alice", ("maths", "demo"))
    assert (agent.compaction, agent.context_tokens, agent.compaction_ratio) == (False, 100000, 0.5)
    assert (agent.compaction_tier, agent.keep_last_turns, agent.max_revisions) == ("cheap", 3, 2)
    assert agent.budget == Budget(max_steps=5, max_tokens=100000, max_runtime_s=120)

    with Executor(tools=[file_add], skills=[TERSE]) as executor:
        result, events = run(executor, agent)
    assert result.ok and result.output == "five"
    assert ran == [(2, 3)]  # the tool named in the file is the registered one
    (finished,) = [ev for ev in events if isinstance(ev, ToolCallFinished)]
    assert finished.result == "5" and finished.error is None
    assert "## Skill: terse" in result.messages[0]["content"]
    assert events[0].owner == "alice"


def test_every_agent_field_is_either_a_file_key_or_code():
    assert set(FILE_KEYS) | set(CODE_KEYS) == set(Agent.model_fields)
    assert not set(FILE_KEYS) & set(CODE_KEYS)


def test_the_name_defaults_to_the_file_stem_and_an_empty_file_is_a_default_agent(tmp_path):
    assert Agent.from_file(write(tmp_path, "researcher.toml", 'instructions = "Find things."')).name == "researcher"
    assert Agent.from_file(write(tmp_path, "blank.yml", "")).name == "blank"


def test_a_yaml_agent_may_name_a_tier(tmp_path):
    agent = Agent.from_file(write(tmp_path, "fast.yml", "tier: fast\nmax_steps: 2\n"))
    assert (agent.tier, agent.model, agent.max_steps) == ("fast", None, 2)


def test_a_model_table_reads_its_api_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_FILE_TEST_KEY", "sk-from-the-environment-123")
    path = write(
        tmp_path,
        "remote.toml",
        """
        [model]
        model = "openai/gpt-4o-mini"
        api_base = "http://127.0.0.1:9/v1"
        api_key = "${AGENT_FILE_TEST_KEY}"
        """,
    )
    agent = Agent.from_file(path)
    assert agent.model is not None and agent.model.params["api_key"] == "sk-from-the-environment-123"
    assert "sk-from-the-environment-123" not in repr(agent)  # a spec's repr masks its key

    monkeypatch.delenv("AGENT_FILE_TEST_KEY")
    with pytest.raises(ConfigError) as caught:
        Agent.from_file(path)
    assert str(caught.value) == (f"{path}: model.api_key: the environment variable AGENT_FILE_TEST_KEY is not set")


# -- bad files: each a ConfigError naming the file, and the key or the line ---------------------------


def test_an_unknown_key_names_the_file_the_key_and_the_closest_field(tmp_path):
    path = write(tmp_path, "typo.toml", "max_step = 3\n")
    with pytest.raises(UnknownOptionError) as caught:
        Agent.from_file(path)
    assert str(caught.value) == f"{path}: unknown keyword 'max_step'; did you mean 'max_steps'?"


def test_a_key_that_is_code_says_to_set_it_in_python(tmp_path):
    path = write(tmp_path, "hooked.yaml", "hooks: [audit]\n")
    with pytest.raises(ConfigError, match=r"hooked\.yaml: hooks is Python code, not configuration"):
        Agent.from_file(path)


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("max_steps = 0\n", "max_steps", "Input should be greater than or equal to 1"),
        ('temperature = "hot"\n', "temperature", "Input should be a valid number"),
        ("tools = 3\n", "tools", "Input should be a valid list"),
        ('skills = "terse"\n', "skills", "Input should be a valid tuple"),
        ("[budget]\nmax_usd = -1\n", "budget", "max_usd: Input should be greater than or equal to 0"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_file_and_the_field(tmp_path, text, field, problem):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as caught:
        Agent.from_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and f"{field}: " in message and problem in message


def test_model_and_tier_together_name_the_file(tmp_path):
    path = write(tmp_path, "both.toml", 'model = "sim/x"\ntier = "fast"\n')
    with pytest.raises(ConfigError, match=r"both\.toml: .*give model= or tier=, not both"):
        Agent.from_file(path)


def test_bad_toml_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path, "broken.toml", 'name = "ok"\nmax_steps = \n')
    with pytest.raises(ConfigError) as caught:
        Agent.from_file(path)
    assert str(caught.value).startswith(f"{path}: invalid TOML: ") and "line 2" in str(caught.value)


def test_bad_yaml_names_the_file_and_the_line_never_the_text(tmp_path):
    path = write(tmp_path, "broken.yaml", "name: ok\ntools: [a, b\napi_key: sk-secret-value\n")
    with pytest.raises(ConfigError) as caught:
        Agent.from_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid YAML at line ") and "sk-secret-value" not in message
    assert caught.value.__context__ is None  # the parser's error (quoting the text) is not chained


@pytest.mark.parametrize(("filename", "text"), [("list.yaml", "- a\n- b\n"), ("word.yml", "just words\n")])
def test_a_file_that_is_not_a_table_at_the_top_is_refused(tmp_path, filename, text):
    path = write(tmp_path, filename, text)
    with pytest.raises(ConfigError, match=rf"{filename}: an agent file holds a table of keys at the top, not a"):
        Agent.from_file(path)


def test_another_suffix_is_refused(tmp_path):
    path = write(tmp_path, "agent.json", "{}")
    with pytest.raises(ConfigError, match=r"agent\.json: an agent file is a \.toml, \.yaml or \.yml file, not \.json"):
        Agent.from_file(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere\.toml: no such agent file"):
        Agent.from_file(tmp_path / "nowhere.toml")


def test_a_tool_name_nothing_registers_fails_the_run_at_start_naming_it(tmp_path):
    agent = Agent.from_file(write(tmp_path, "lost.toml", f'tools = ["no_such_tool"]\nmodel = "{SCRIPT}"\n'))
    with Executor() as executor, pytest.raises(ConfigError, match="no tool named 'no_such_tool'"):
        executor.run(agent, "go")


# -- catalogues ----------------------------------------------------------------------------------------


def agents_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "agents"
    folder.mkdir()
    write(
        folder, "researcher.toml", 'instructions = "Find sources.\\nCite them."\ntools = ["file_add"]\ntier = "deep"\n'
    )
    write(folder, "writer.yaml", "instructions: Write it up.\nmodel: sim/writer\nskills: [terse]\n")
    write(folder, "editor.yml", "name: chief-editor\nmax_steps: 3\nbudget: {max_usd: 0.5}\n")
    write(folder, "notes.md", "not an agent")
    (folder / "drafts").mkdir()
    write(folder / "drafts", "old.toml", "max_steps = 0\n")  # a sub-folder is not read
    return folder


def test_load_agents_reads_every_agent_file_of_the_folder_by_name(tmp_path):
    catalogue = load_agents(agents_folder(tmp_path))
    assert isinstance(catalogue, AgentCatalogue)
    assert list(catalogue) == ["chief-editor", "researcher", "writer"]  # files in name order
    assert catalogue["researcher"].tier == "deep" and catalogue["writer"].skills == ("terse",)
    assert catalogue.files["chief-editor"].name == "editor.yml"
    with pytest.raises(TypeError):
        catalogue["x"] = Agent()  # type: ignore[index]  # read-only
    assert "AgentCatalogue(3 agents from " in repr(catalogue) and "researcher    Find sources." in repr(catalogue)


def test_catalogue_df_has_a_row_per_agent(tmp_path):
    df = load_agents(agents_folder(tmp_path)).catalogue_df()
    assert list(df.columns) == [
        "name",
        "file",
        "model",
        "tier",
        "tools",
        "skills",
        "max_steps",
        "budget",
        "description",
    ]
    rows = {row["name"]: row for row in df.to_dict("records")}
    assert rows["researcher"]["tools"] == ["file_add"] and rows["researcher"]["description"] == "Find sources."
    assert rows["researcher"]["file"].endswith("researcher.toml") and rows["researcher"]["model"] is None
    assert rows["writer"]["model"] == "sim/writer" and rows["writer"]["skills"] == ["terse"]
    assert rows["chief-editor"]["budget"] == {"max_usd": 0.5} and rows["chief-editor"]["max_steps"] == 3


def test_two_agents_with_one_name_name_both_files(tmp_path):
    folder = tmp_path / "agents"
    folder.mkdir()
    first = write(folder, "a.toml", 'name = "twin"\n')
    second = write(folder, "b.yaml", "name: twin\n")
    with pytest.raises(ConfigError) as caught:
        load_agents(folder)
    assert str(caught.value) == f"two agents are named 'twin': {first} and {second}; rename one"


def test_load_agents_fails_on_the_first_bad_file_naming_it(tmp_path):
    folder = tmp_path / "agents"
    folder.mkdir()
    write(folder, "a.toml", "max_steps = 2\n")
    bad = write(folder, "b.toml", "max_steps = 0\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: .*max_steps"):
        load_agents(folder)


def test_a_missing_agents_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere: no such agents folder"):
        load_agents(tmp_path / "nowhere")
