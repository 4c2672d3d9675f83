"""Palettes: the tools (and skills) a run is offered, by name globs (``GlobPalette``) or by owner (``IdentityPalette``)."""

from __future__ import annotations

import pytest

from executus_nb import (
    Agent,
    ConfigError,
    Executor,
    GlobPalette,
    IdentityPalette,
    RunResult,
    Skill,
    sim,
    tool,
)
from executus_nb.run.ports import Ports
from executus_nb.types.events import ToolCallFinished

WAIT = 120  # a guard against hanging, not a speed bound

ran: list[str] = []


@tool
def search_web(query: str) -> str:
    """Search the web."""
    ran.append("search_web")
    return f"found {query}"


@tool
def search_files(pattern: str) -> str:
    """Search the files."""
    ran.append("search_files")
    return f"matched {pattern}"


@tool
def delete_files(pattern: str) -> str:
    """Delete files."""
    ran.append("delete_files")
    return "deleted"


TOOLS = [search_web, search_files, delete_files]


class Requests:
    """A sim model that records the tools and the system message of each request, and plays a script."""

    def __init__(self, *turns):
        self.turns, self.tools, self.systems = list(turns), [], []

    def __call__(self, messages, tools):
        self.tools.append(sorted(t["function"]["name"] for t in tools))
        self.systems.append(next((m["content"] for m in messages if m["role"] == "system"), ""))
        return self.turns[len(self.tools) - 1]


def run(executor: Executor, agent: Agent, **kw) -> tuple[RunResult, list]:
    handle = executor.run(agent, "go", **kw)
    return handle.wait(WAIT, quiet=True), handle.events


def test_a_glob_palette_offers_only_the_allowed_tools_and_a_call_to_a_hidden_one_fails_that_step():
    ran.clear()
    model = Requests(sim.call("delete_files", pattern="*"), sim.call("search_web", query="news"), sim.reply("ok"))
    agent = Agent(tools=TOOLS, model=sim.function(model, name="palette-globs"))
    with Executor(palette=GlobPalette(allow=["search_*", "delete_*"], deny="delete_*")) as executor:
        result, events = run(executor, agent)
    assert result.ok
    assert model.tools == [["search_files", "search_web"]] * 3  # the model was never offered delete_files
    assert ran == ["search_web"]
    finished = [ev for ev in events if isinstance(ev, ToolCallFinished)]
    assert [(ev.name, ev.error.type if ev.error else None) for ev in finished] == [
        ("delete_files", "UnknownToolError"),
        ("search_web", None),
    ]
    assert "available tools: ['search_files', 'search_web']" in finished[0].result


def test_globs_are_case_sensitive_and_the_default_allows_everything():
    palette = GlobPalette(allow="Search_*")
    assert not palette.allows("search_web") and palette.allows("Search_web")
    assert all(GlobPalette().allows(name) for name in ("a", "search_web", "x.y"))
    assert GlobPalette(deny=["delete_*"]) == GlobPalette(allow="*", deny="delete_*")
    assert repr(GlobPalette(allow="search_*", deny="*_files")) == "GlobPalette(allow=['search_*'], deny=['*_files'])"


def test_executor_palette_fills_the_ports_palette_slot():
    palette = GlobPalette(allow="search_*")
    with Executor(palette=palette) as executor:
        assert executor.ports.palette is palette
    with Executor(ports=Ports(palette=palette)) as executor:
        assert executor.ports.palette is palette


def test_an_identity_palette_offers_each_owner_their_own_tools():
    palette = IdentityPalette(
        {"alice": GlobPalette(allow="*", deny="delete_*"), "bob": ["search_web"], "root": "*"},
        default=["search_files"],
    )
    offered: dict[str | None, list[str]] = {}
    with Executor(palette=palette) as executor:
        for owner in ("alice", "bob", "root", "carol", None):
            model = Requests(sim.reply("ok"))
            agent = Agent(tools=TOOLS, model=sim.function(model, name=f"palette-owner-{owner}"))
            result, _ = run(executor, agent, owner=owner)
            assert result.ok
            offered[owner] = model.tools[0]
    assert offered == {
        "alice": ["search_files", "search_web"],
        "bob": ["search_web"],
        "root": ["delete_files", "search_files", "search_web"],
        "carol": ["search_files"],  # an owner with no rule gets the default
        None: ["search_files"],  # so does a run without an owner
    }


def test_an_identity_palette_reads_the_agents_owner_and_without_a_default_offers_nothing():
    palette = IdentityPalette({"alice": ["search_*"]})
    with Executor(palette=palette) as executor:
        for owner, expected in (("alice", ["search_files", "search_web"]), ("mallory", [])):
            model = Requests(sim.reply("ok"))
            agent = Agent(owner=owner, tools=TOOLS, model=sim.function(model, name=f"palette-agent-{owner}"))
            result, _ = run(executor, agent)
            assert result.ok and model.tools == [expected]
    assert IdentityPalette({"*": ["a*"]}).palette_for("anyone") == GlobPalette(allow="a*")


# -- palettes choose skills too -------------------------------------------------------------------------

SKILLS = [
    Skill("search-help", "How to search.", "Search before answering.", ("search_web",)),
    Skill("cleanup", "How to clean up.", "Delete what is old.", ("delete_files",)),
]


def test_a_glob_palette_leaves_out_the_skills_it_does_not_offer():
    model = Requests(sim.reply("ok"))
    agent = Agent(
        instructions="Base.", skills=["search-help", "cleanup"], model=sim.function(model, name="palette-skills")
    )
    palette = GlobPalette(skills_deny="clean*")
    with Executor(tools=TOOLS, skills=SKILLS, palette=palette) as executor:
        result, _ = run(executor, agent)
    assert result.ok
    assert model.systems == ["Base.\n\n## Skill: search-help\nHow to search.\n\nSearch before answering."]
    assert model.tools == [["search_web"]]  # the left-out skill's tool is not added either


def test_an_identity_palette_chooses_skills_by_owner():
    systems: dict[str, str] = {}
    palette = IdentityPalette({"admin": GlobPalette(), "*": GlobPalette(skills_allow="search-*")})
    with Executor(tools=TOOLS, skills=SKILLS, palette=palette) as executor:
        for owner in ("admin", "guest"):
            model = Requests(sim.reply("ok"))
            agent = Agent(skills=["search-help", "cleanup"], model=sim.function(model, name=f"palette-sk-{owner}"))
            result, _ = run(executor, agent, owner=owner)
            assert result.ok
            systems[owner] = model.systems[0]
    assert "## Skill: cleanup" in systems["admin"] and "## Skill: search-help" in systems["admin"]
    assert "## Skill: cleanup" not in systems["guest"] and "## Skill: search-help" in systems["guest"]


def test_an_unknown_skill_is_an_error_even_when_the_palette_would_leave_it_out():
    agent = Agent(skills=["nope"])
    with Executor(skills=SKILLS, palette=GlobPalette(skills_allow=())) as executor:
        with pytest.raises(ConfigError, match="unknown skill 'nope'"):
            executor.run(agent, "go")


class AsyncSkills:
    """A palette whose offer_skills is a coroutine: skills are chosen as a run is prepared, synchronously."""

    def offer(self, ctx, tools):
        return tools

    async def offer_skills(self, identity, names):
        return names


def test_an_offer_skills_that_returns_no_list_is_a_config_error():
    with Executor(skills=SKILLS, palette=AsyncSkills()) as executor:
        with pytest.raises(ConfigError, match=r"AsyncSkills\.offer_skills\(\) must return a list of skill names"):
            executor.run(Agent(skills=["cleanup"]), "go")


# -- bad palettes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GlobPalette(allow=[3]), r"GlobPalette\(allow=\.\.\.\): a glob is a non-empty str"),
        (lambda: GlobPalette(deny=[""]), r"GlobPalette\(deny=\.\.\.\): a glob is a non-empty str"),
        (lambda: IdentityPalette(["alice"]), r"IdentityPalette\(rules=\.\.\.\) maps an owner"),
        (lambda: IdentityPalette({"alice": 3}), r"IdentityPalette\(rules=\{'alice': \.\.\.\}\): give a GlobPalette"),
        (lambda: IdentityPalette({"*": ["a"]}, default=["b"]), r"under '\*' or as default=, not both"),
    ],
)
def test_a_bad_palette_is_a_config_error_naming_the_argument(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
