"""Skills as folders of ``SKILL.md``: a catalogue by name, and an agent's skills joining its runs' instructions and tools."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from executus_nb import (
    Agent,
    ConfigError,
    Executor,
    RunContext,
    RunResult,
    Skill,
    SkillCatalogue,
    load_skills,
    sim,
    tool,
)
from executus_nb.types.events import ToolCallFinished

WAIT = 120  # a guard against hanging, not a speed bound

ran: list[str] = []


@tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    ran.append("word_count")
    return len(text.split())


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    ran.append("shout")
    return text.upper()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def skills_folder(tmp_path: Path) -> Path:
    root = tmp_path / "skills"
    write(
        root / "summarising" / "SKILL.md",
        """
        ---
        name: summarise
        description: Summarise a text in three bullet points.
        tools: [word_count]
        ---
        # Summaries

        Count the words first, then write three bullets.
        """,
    )
    write(
        root / "loud" / "SKILL.md",
        """
        ---
        name: shouting
        description: Say it loudly.
        tools:
          - shout
        license: MIT
        ---
        Shout the final answer.
        """,
    )
    (root / "not-a-skill").mkdir()  # no SKILL.md: not a skill
    write(root / "README.md", "The skills of this project.")
    return root


class Requests:
    """A sim model that records each request (messages and offered tools) and plays a script."""

    def __init__(self, *turns):
        self.turns, self.messages, self.tools = list(turns), [], []

    def __call__(self, messages, tools):
        self.messages.append(messages)
        self.tools.append(sorted(t["function"]["name"] for t in tools))
        return self.turns[len(self.messages) - 1]

    @property
    def system(self) -> str:
        return self.messages[0][0]["content"]


def run(executor: Executor, agent: Agent, **kw) -> tuple[RunResult, list]:
    handle = executor.run(agent, "go", **kw)
    return handle.wait(WAIT, quiet=True), handle.events


# -- the catalogue -------------------------------------------------------------------------------------


def test_load_skills_reads_each_sub_folder_holding_a_skill_md_keyed_by_its_name(tmp_path):
    root = skills_folder(tmp_path)
    catalogue = load_skills(root)
    assert isinstance(catalogue, SkillCatalogue)
    assert sorted(catalogue) == ["shouting", "summarise"]  # the front matter's names, not the folders'
    summarise = catalogue["summarise"]
    assert summarise == Skill(
        "summarise",
        "Summarise a text in three bullet points.",
        "# Summaries\n\nCount the words first, then write three bullets.",
        ("word_count",),
        root / "summarising" / "SKILL.md",
    )
    assert catalogue["shouting"].tools == ("shout",)  # other front matter keys (license) are left alone
    with pytest.raises(TypeError):
        catalogue["x"] = summarise  # type: ignore[index]  # read-only


def test_catalogue_df_and_repr_list_the_skills(tmp_path):
    catalogue = load_skills(skills_folder(tmp_path))
    df = catalogue.catalogue_df()
    assert list(df.columns) == ["name", "description", "tools", "path"]
    rows = {row["name"]: row for row in df.to_dict("records")}
    assert rows["summarise"]["tools"] == ["word_count"] and rows["shouting"]["description"] == "Say it loudly."
    assert str(rows["summarise"]["path"]).endswith("summarising/SKILL.md")
    shown = repr(catalogue)
    assert shown.splitlines()[0].startswith("SkillCatalogue(2 skills from ")
    assert "  summarise  Summarise a text in three bullet points.  [tools: word_count]" in shown


# -- skills in a run -----------------------------------------------------------------------------------


def test_an_agents_skills_reach_the_system_message_and_their_tools_are_callable(tmp_path):
    ran.clear()
    model = Requests(sim.calls(sim.call("word_count", text="a b c"), sim.call("shout", text="hi")), sim.reply("DONE"))
    agent = Agent(
        name="writer",
        instructions="You write.",
        skills=["summarise", "shouting"],
        model=sim.function(model, name="skills-two"),
    )
    with Executor(tools=[word_count, shout], skills=load_skills(skills_folder(tmp_path))) as executor:
        result, events = run(executor, agent)
    assert result.ok and result.output == "DONE"
    assert model.system == (
        "You write.\n\n"
        "## Skill: summarise\nSummarise a text in three bullet points.\n\n"
        "# Summaries\n\nCount the words first, then write three bullets.\n\n"
        "## Skill: shouting\nSay it loudly.\n\nShout the final answer."
    )
    assert model.tools[0] == ["shout", "word_count"]  # the skills' tools are offered
    assert sorted(ran) == ["shout", "word_count"]
    assert {ev.name: ev.result for ev in events if isinstance(ev, ToolCallFinished)} == {
        "word_count": "3",
        "shout": "HI",
    }
    assert agent.skills == ("summarise", "shouting") and agent.tools == []  # the caller's agent is left as it is


def test_a_skill_tool_the_agent_already_has_is_not_offered_twice():
    model = Requests(sim.reply("ok"))
    skill = Skill("counting", "Count words.", "Count.", ("word_count",))
    agent = Agent(tools=[word_count], skills=["counting"], model=sim.function(model, name="skills-no-twice"))
    with Executor(skills=[skill]) as executor:
        result, _ = run(executor, agent)
    assert result.ok and model.tools == [["word_count"]]


def test_callable_instructions_still_get_the_context_and_the_skills_follow_them():
    model = Requests(sim.reply("ok"))
    seen: list[str] = []

    def instructions(ctx: RunContext) -> str:
        seen.append(ctx.run_id)
        return f"Help {ctx.deps}."

    agent = Agent(instructions=instructions, skills=["terse"], model=sim.function(model, name="skills-callable"))
    with Executor(skills=[Skill("terse", "Be brief.")]) as executor:
        handle = executor.run(agent, "go", deps="Ada")
        result = handle.wait(WAIT, quiet=True)
    assert result.ok and seen == [handle.run_id]
    assert model.system == "Help Ada.\n\n## Skill: terse\nBe brief."


def test_executor_skills_may_be_a_folder_path(tmp_path):
    with Executor(skills=str(skills_folder(tmp_path))) as executor:
        assert sorted(executor.skills or {}) == ["shouting", "summarise"]


def test_an_unknown_skill_is_a_config_error_before_the_run_starts(tmp_path):
    agent = Agent(name="writer", skills=["summarize"], model=sim.scripted([sim.reply("no")], name="skills-unknown"))
    with Executor(skills=load_skills(skills_folder(tmp_path))) as executor:
        with pytest.raises(ConfigError) as caught:
            executor.run(agent, "go")
        assert executor.runs == []  # nothing started
    assert str(caught.value) == (
        "agent 'writer' uses unknown skill 'summarize'; known skills: ['shouting', 'summarise']; "
        "did you mean 'summarise'?"
    )


def test_skills_without_a_catalogue_say_how_to_give_one():
    agent = Agent(name="writer", skills=["summarise"])
    with Executor() as executor, pytest.raises(ConfigError, match=r"Executor\(skills=load_skills\('skills/'\)\)"):
        executor.run(agent, "go")


def test_a_skill_tool_nothing_registers_is_named_when_the_run_starts():
    agent = Agent(skills=["lost"])
    with Executor(skills=[Skill("lost", "Uses a tool.", tools=("no_such_tool",))]) as executor:
        with pytest.raises(ConfigError, match="no tool named 'no_such_tool'"):
            executor.run(agent, "go")


def test_an_agent_file_names_its_skills(tmp_path):
    path = write(tmp_path / "agents" / "writer.toml", 'skills = ["shouting"]\ninstructions = "Write."\n')
    model = Requests(sim.reply("OK"))
    agent = Agent.from_file(path).model_copy(update={"model": sim.function(model, name="skills-from-file")})
    with Executor(tools=[shout], skills=skills_folder(tmp_path)) as executor:
        result, _ = run(executor, agent)
    assert result.ok and model.system.startswith("Write.\n\n## Skill: shouting\n") and model.tools == [["shout"]]


# -- bad skill files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# no front matter\n", "front matter: the file must start with a '---' line"),
        ("---\nname: x\ndescription: y\n", "front matter: no closing '---' line"),
        ("---\nname: x\ndescription: y: z\n---\n", "front matter: invalid YAML at line 3, column 15: mapping values"),
        ("---\n- a list\n---\n", "front matter: a table of name:, description: (and tools:), not a list"),
        ("---\ndescription: y\n---\n", "front matter: name is missing"),
        ("---\nname: x\n---\n", "front matter: description is missing"),
        ("---\nname: 3\ndescription: y\n---\n", "front matter: name must be a str, not int"),
        ("---\nname: two words\ndescription: y\n---\n", "name: a skill name is letters, digits, '-' and '_'"),
        ("---\nname: x\ndescription: ''\n---\n", "description: a skill needs a description"),
        ("---\nname: x\ndescription: y\ntools: word_count\n---\n", "front matter: tools must be a list"),
        ("---\nname: x\ndescription: y\ntools: [1]\n---\n", "tools: a list of registered tool names"),
        ("---\nname: x\ndescripton: y\n---\n", "unknown key 'descripton'; did you mean 'description'?"),
    ],
)
def test_a_bad_skill_file_is_a_config_error_naming_the_file_and_the_field(tmp_path, text, message):
    path = write(tmp_path / "skills" / "bad" / "SKILL.md", text)
    with pytest.raises(ConfigError) as caught:
        load_skills(tmp_path / "skills")
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_two_skills_with_one_name_name_both_files(tmp_path):
    first = write(tmp_path / "skills" / "a" / "SKILL.md", "---\nname: twin\ndescription: One.\n---\n")
    second = write(tmp_path / "skills" / "b" / "SKILL.md", "---\nname: twin\ndescription: Two.\n---\n")
    with pytest.raises(ConfigError) as caught:
        load_skills(tmp_path / "skills")
    assert str(caught.value) == f"two skills are named 'twin': {first} and {second}; rename one"


def test_a_missing_skills_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere: no such skills folder"):
        load_skills(tmp_path / "nowhere")


def test_executor_skills_of_the_wrong_kind_are_refused():
    with pytest.raises(ConfigError, match=r"skills= is a SkillCatalogue"):
        Executor(skills=3)  # type: ignore[arg-type]
