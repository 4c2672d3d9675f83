"""``@tool``: schemas from type hints and docstrings, validation, invocation and registries."""

import asyncio
import threading
import time
from typing import Annotated, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from executus_nb import (
    Agent,
    ConfigError,
    Executor,
    RunStatus,
    Tool,
    ToolRegistrationError,
    ToolRegistry,
    UserError,
    sim,
    tool,
)
from executus_nb.errors import ToolArgumentsError, ToolTimeoutError

# a guard against hanging, not a speed bound: the first run of a process imports litellm
WAIT = 120


def params(t: Tool) -> dict:
    return t.schema["function"]["parameters"]


# -- schema -----------------------------------------------------------------------------


def test_schema_from_type_hints_and_docstring():
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first addend.
            b (int): The second addend.
        """
        return a + b

    assert add.name == "add"
    assert add.schema == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "description": "The first addend."},
                    "b": {"type": "integer", "description": "The second addend."},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    }


def test_description_keeps_the_prose_but_not_the_other_sections():
    @tool
    def search(query: str, limit: int = 5) -> list:
        """Search the notes.

        Finds notes whose text matches.

        Args:
            query: The text to look for,
                over several lines.
            limit:
                At most this many results.

        Returns:
            The matching notes.

        Raises:
            ValueError: never.
        """
        return []

    assert search.description == "Search the notes.\n\nFinds notes whose text matches."
    props = params(search)["properties"]
    assert props["query"]["description"] == "The text to look for, over several lines."
    assert props["limit"]["description"] == "At most this many results."
    assert "ValueError" not in str(search.schema)


def test_defaults_and_optional_arguments():
    @tool
    def greet(name: str, times: int = 2, suffix: Optional[str] = None, loud: bool = False) -> str:  # noqa: UP045 — typing.Optional must be read too
        """Greet someone."""
        return name

    p = params(greet)
    assert p["required"] == ["name"]
    assert p["properties"]["times"] == {"type": "integer", "default": 2}
    assert p["properties"]["suffix"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert p["properties"]["loud"] == {"type": "boolean", "default": False}
    assert greet.parse_arguments('{"name": "Ada"}') == {"name": "Ada", "times": 2, "suffix": None, "loud": False}


def test_annotated_field_descriptions_and_constraints():
    @tool
    def repeat(
        text: Annotated[str, Field(description="What to repeat.")],
        times: Annotated[int, Field(ge=1, le=5, description="How often.")] = 1,
    ) -> str:
        """Repeat text."""
        return text * times

    props = params(repeat)["properties"]
    assert props["text"] == {"type": "string", "description": "What to repeat."}
    assert props["times"] == {"type": "integer", "minimum": 1, "maximum": 5, "description": "How often.", "default": 1}
    with pytest.raises(ToolArgumentsError, match="times: Input should be less than or equal to 5"):
        repeat.parse_arguments('{"text": "x", "times": 9}')


def test_a_docstring_description_wins_over_none_but_annotated_keeps_its_own():
    @tool
    def f(a: Annotated[int, Field(description="from Field")], b: int) -> int:
        """F.

        Args:
            b: from the docstring
        """
        return a

    props = params(f)["properties"]
    assert props["a"]["description"] == "from Field"
    assert props["b"]["description"] == "from the docstring"


def test_literal_and_list_arguments():
    @tool
    def pick(mode: Literal["fast", "slow"], ids: list[int]) -> str:
        """Pick."""
        return mode

    props = params(pick)["properties"]
    assert props["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert props["ids"] == {"type": "array", "items": {"type": "integer"}}
    with pytest.raises(ToolArgumentsError, match="mode: Input should be 'fast' or 'slow'"):
        pick.parse_arguments('{"mode": "medium", "ids": []}')


class Address(BaseModel):
    city: str
    zip: str = "00000"


class Person(BaseModel):
    name: str
    age: int
    address: Address


@tool
def register(person: Person, note: str = "") -> str:
    """Register a person.

    Args:
        person: Who to register.
    """
    return f"{person.name} ({person.age}) in {person.address.city}"


def test_pydantic_models_as_arguments():
    p = params(register)
    assert p["properties"]["person"]["$ref"] == "#/$defs/Person"
    assert p["properties"]["person"]["description"] == "Who to register."
    assert set(p["$defs"]) == {"Person", "Address"}
    assert p["$defs"]["Person"]["required"] == ["name", "age", "address"]
    args = register.parse_arguments('{"person": {"name": "Ada", "age": 36, "address": {"city": "London"}}}')
    assert isinstance(args["person"], Person)
    assert args["person"].address == Address(city="London")
    with pytest.raises(ToolArgumentsError, match=r"person\.address\.city: Field required"):
        register.parse_arguments('{"person": {"name": "Ada", "age": 36, "address": {}}}')


def test_a_pydantic_argument_reaches_the_tool_as_a_model_instance():
    model = sim.scripted(
        [
            sim.call("register", person={"name": "Ada", "age": 36, "address": {"city": "London"}}),
            sim.reply("registered"),
        ]
    )
    result = Executor().run(Agent(tools=[register], model=model), "go").wait(timeout=WAIT)
    assert result.steps[1].result == "Ada (36) in London"


def test_name_and_description_overrides():
    @tool(name="lookup_v2", description="Look something up.")
    def lookup(key: str) -> str:
        """Old description."""
        return key

    assert lookup.name == "lookup_v2"
    assert lookup.schema["function"]["name"] == "lookup_v2"
    assert lookup.description == "Look something up."


def test_a_function_without_docstring_is_described_by_its_name():
    @tool
    def bare(x: int) -> int:
        return x

    assert bare.description == "bare"


def test_a_tool_stays_callable_as_the_function():
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert add(2, 3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Add."
    assert repr(add) == "Tool('add')"


# -- arguments --------------------------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def ping() -> str:
    """No arguments."""
    return "pong"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{oops", "arguments are not valid JSON"),
        ("[1, 2]", "arguments must be a JSON object, got list"),
        ('"text"', "arguments must be a JSON object, got str"),
        ('{"a": "x", "b": 1}', "invalid arguments for add: a: Input should be a valid integer"),
        ('{"a": 1}', "invalid arguments for add: b: Field required"),
        ('{"a": 1, "b": 2, "c": 3}', "c: Extra inputs are not permitted"),
        ("", "a: Field required; b: Field required"),
    ],
    ids=["not-json", "array", "string", "wrong-type", "missing", "extra", "empty"],
)
def test_bad_arguments_raise_a_clear_error(raw, message):
    with pytest.raises(ToolArgumentsError) as info:
        add.parse_arguments(raw)
    assert message in str(info.value)


def test_valid_arguments_are_coerced_like_pydantic_does():
    assert add.parse_arguments('{"a": "2", "b": 3}') == {"a": 2, "b": 3}


@pytest.mark.parametrize("raw", ["", "  ", "{}"])
def test_a_tool_without_arguments_accepts_empty_arguments(raw):
    assert ping.parse_arguments(raw) == {}


def test_star_args_cannot_be_described():
    def f(*values: int) -> int:
        return sum(values)

    def g(**options: str) -> str:
        return ""

    for fn in (f, g):
        with pytest.raises(ToolRegistrationError, match=r"\*args/\*\*kwargs"):
            tool(fn)


# -- invocation -------------------------------------------------------------------------


def test_async_tools_are_awaited():
    @tool
    async def later(x: int) -> int:
        """Async."""
        await asyncio.sleep(0)
        return x * 2

    assert later.is_async
    assert asyncio.run(later.invoke({"x": 21})) == 42


def test_sync_tools_are_invoked_in_a_worker_thread():
    @tool
    def where() -> int:
        """Sync."""
        return threading.get_ident()

    assert not where.is_async
    assert asyncio.run(where.invoke({})) != threading.get_ident()


def test_a_tool_timeout_raises_tool_timeout_error():
    @tool(timeout_s=0.05)
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(1)
        return "late"

    with pytest.raises(ToolTimeoutError, match="slow timed out after 0.05 s"):
        asyncio.run(slow.invoke({}))


def test_a_tools_own_timeout_error_is_not_mistaken_for_its_timeout():
    @tool(timeout_s=30)
    async def upstream() -> str:
        """Calls a slow service."""
        raise TimeoutError("the upstream service took too long")

    with pytest.raises(TimeoutError, match="the upstream service took too long") as info:
        asyncio.run(upstream.invoke({}))
    assert not isinstance(info.value, ToolTimeoutError)


def test_a_sync_tool_timeout_raises_tool_timeout_error():
    @tool(timeout_s=0.05)
    def blocking() -> str:
        """Blocks."""
        time.sleep(0.3)
        return "late"

    with pytest.raises(ToolTimeoutError, match="blocking timed out after 0.05 s"):
        asyncio.run(blocking.invoke({}))


# -- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad name", "has.dot", "1starts_with_digit", "", "x" * 65, "ünïcode"])
def test_a_bad_tool_name_is_refused(name):
    with pytest.raises(ToolRegistrationError, match="must match"):
        tool(name=name)(lambda: None)


@pytest.mark.parametrize("name", ["a", "snake_case", "kebab-case", "_private", "x" * 64])
def test_good_tool_names_are_accepted(name):
    assert tool(name=name)(lambda: None).name == name


def test_a_lambda_needs_a_name():
    with pytest.raises(ToolRegistrationError, match="<lambda>"):
        tool(lambda: None)


# -- registry ---------------------------------------------------------------------------


def _other_add():
    @tool(name="add")
    def other(a: int, b: int) -> int:
        """Subtract, confusingly."""
        return a - b

    return other


def test_registry_refuses_a_different_tool_under_a_taken_name():
    registry = ToolRegistry([add])
    with pytest.raises(ToolRegistrationError, match="a tool named 'add' is already registered"):
        registry.register(_other_add())
    assert registry.get("add") is add


def test_registry_replace_true_overrides():
    registry = ToolRegistry([add])
    other = _other_add()
    registry.register(other, replace=True)
    assert registry.get("add") is other


def test_registering_the_same_function_again_is_fine():
    registry = ToolRegistry([add])
    registry.register(add)
    registry.register(add.fn)  # the plain function, wrapped again
    assert len(registry) == 1
    assert registry.names() == ["add"]
    assert "add" in registry
    assert registry.get("add").fn is add.fn


def test_registry_accepts_plain_functions():
    def double(x: int) -> int:
        """Double."""
        return 2 * x

    registry = ToolRegistry([double])
    assert isinstance(registry.get("double"), Tool)
    assert registry.get("nope") is None


def test_tools_by_name_come_from_the_executor_registry():
    executor = Executor(tools=[add, ping])
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("5")])
    result = executor.run(Agent(tools=["add"], model=model), "go").wait(timeout=WAIT)
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps[1].result == "5"


def test_an_unknown_tool_name_is_a_user_error_listing_known_names():
    executor = Executor(tools=[add, ping])
    with pytest.raises(UserError, match=r"no tool named 'adder' is registered; known: .*'add'.*'ping'"):
        executor.run(Agent(tools=["adder"], model=sim.scripted([sim.reply("x")])), "go")


def test_an_executor_with_two_tools_of_one_name_is_refused():
    with pytest.raises(ToolRegistrationError):
        Executor(tools=[add, _other_add()])


def test_an_agent_with_two_different_tools_of_one_name_is_refused():
    with pytest.raises(ToolRegistrationError, match="two different tools are named 'add'"):
        Executor().run(Agent(tools=[add, _other_add()], model=sim.scripted([sim.reply("x")])), "go")


def test_an_agent_tool_must_be_a_tool_function_or_name():
    with pytest.raises(ConfigError, match="a tool is a @tool function"):
        Agent(tools=[42])


def test_an_agent_accepts_plain_functions_as_tools():
    def triple(x: int) -> int:
        """Triple."""
        return 3 * x

    model = sim.scripted([sim.call("triple", x=4), sim.reply("12")])
    result = Executor().run(Agent(tools=[triple], model=model), "go").wait(timeout=WAIT)
    assert result.steps[1].result == "12"


def test_unresolvable_type_hints_are_a_registration_error():
    from executus_nb import ToolRegistrationError
    from executus_nb.tool.decorator import Tool

    def make():
        class Local:
            pass

        def uses_local(x: "Local") -> str:  # a string annotation of a type that get_type_hints cannot see
            """Use a local type."""
            return "x"

        return uses_local

    with pytest.raises(ToolRegistrationError, match="cannot resolve its type hints"):
        Tool(make())


@pytest.mark.parametrize(
    ("tools", "name", "expected"),
    [
        ((), "web_search", r"known: \[\] \(none registered\)"),
        ((add, ping), "adder", r"known: \['add', 'ping'\] — did you mean 'add'\?"),
    ],
)
def test_an_unknown_tool_name_says_where_names_come_from(tools, name, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        Executor(tools=list(tools)).run(Agent(tools=[name], model=sim.scripted([sim.reply("x")])), "go")
    message = str(info.value)
    assert "Executor(tools=[...])" in message and f"Agent(tools=[{name}])" in message
    assert "?." not in message  # one sentence end, never doubled punctuation
