"""The package's layering, read from its source: imports point down, nothing imports in a circle,
and the upper layers use only the public seams of the run layer.

The layers, lowest first (a module may import its own layer and the layers below it):

0. ``types``, ``errors``, ``redaction`` — the shared vocabulary: typed records, the one exception
   tree (raised by every layer, so it sits at the bottom) and the secret masker (pure string work,
   used by error messages and the model layer).  No I/O.
1. ``model``, ``tool``, ``lane`` — one concern each: calling models, tools and their gate, and the
   concurrency bounds (``lane`` knows nothing of runs: a lane is a key and a count).
2. ``agent`` — an agent is a definition made of models and tools, so it sits above both, and
   below the run layer that runs it; with it, what agents are read from: agent files, skills and
   catalogues (``agent_file``, ``skills``, ``catalogue``).
3. ``run`` — the executor, the loop, the ``Run`` handle, hooks and ports.
4. ``fanout``, ``chat`` — N×M runs, and conversations, built on the executor's public ``run()``.
5. ``frames``, ``sinks`` — projections and subscribers of the event log.
6. ``nb`` — the notebook views.
7. ``executus_nb`` itself (``__init__``): the public names.

A ``TYPE_CHECKING`` import is not an import for direction (it never runs), but it is an edge for
cycles: a circle of type names still ties the modules together (a reader, a type checker and an
import graph see it), so the lower module states what it needs as a ``Protocol`` (the views' and
tables' in ``types/handles.py``) and the upper one satisfies it structurally.  An import inside a function that points up is allowed
only for the façade and display shims listed in ``UPWARD_SHIMS`` by name: they load a view or a
table on first use, so ``import executus_nb`` stays light and the core never imports ipywidgets or
pandas.  Implicit imports of parent packages are not edges (every module's parent is the package).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "executus_nb"

LAYERS: list[tuple[str, ...]] = [
    ("executus_nb.types", "executus_nb.errors", "executus_nb.redaction"),
    ("executus_nb.model", "executus_nb.tool", "executus_nb.lane"),
    ("executus_nb.agent", "executus_nb.agent_file", "executus_nb.skills", "executus_nb.catalogue"),
    ("executus_nb.run",),
    ("executus_nb.fanout", "executus_nb.chat", "executus_nb.pipeline", "executus_nb.schedule", "executus_nb.scale"),
    ("executus_nb.frames", "executus_nb.sinks", "executus_nb.compare", "executus_nb.store"),
    ("executus_nb.nb",),
    ("executus_nb",),
]

# (importing module, function's qualified name, imported module): the upward imports that must stay lazy.
UPWARD_SHIMS: set[tuple[str, str, str]] = {
    # The Run handle's views and tables: imported when first asked for.
    ("executus_nb.run.handle", "Run.wait", "executus_nb.nb.console"),  # the terminal step printer
    ("executus_nb.run.handle", "Run.view", "executus_nb.nb.runview"),
    ("executus_nb.run.handle", "Run._ipython_display_", "executus_nb.nb.display"),
    ("executus_nb.run.handle", "Run.steps_df", "executus_nb.frames"),
    ("executus_nb.run.handle", "Run.tool_calls_df", "executus_nb.frames"),
    ("executus_nb.run.handle", "Run.usage_df", "executus_nb.frames"),
    # The executor's façade: Executor.fanout builds a Fanout, which is built on Executor.run.
    ("executus_nb.run.executor", "Executor.fanout", "executus_nb.fanout"),
    ("executus_nb.run.executor", "Executor.chat", "executus_nb.chat"),
    # Executor.schedule starts a Schedule, whose runs are started by Executor.run.
    ("executus_nb.run.executor", "Executor.schedule", "executus_nb.schedule"),
    ("executus_nb.run.executor", "Executor.schedules_df", "executus_nb.schedule"),
    ("executus_nb.run.executor", "Executor.runs_df", "executus_nb.frames"),
    ("executus_nb.run.executor", "Executor.usage_df", "executus_nb.frames"),
    ("executus_nb.run.executor", "Executor.steps_df", "executus_nb.frames"),
    ("executus_nb.run.executor", "Executor.compare", "executus_nb.compare"),  # two runs' steps aligned
    # With a store, the executor's tables read it (every session's runs).
    ("executus_nb.run.executor", "Executor.runs_df", "executus_nb.store.reads"),
    ("executus_nb.run.executor", "Executor.usage_df", "executus_nb.store.reads"),
    ("executus_nb.run.executor", "Executor.steps_df", "executus_nb.store.reads"),
    # A configured path (EXECUTUS_STORE, a file's audit = "...") becomes its store or audit log when resolved.
    ("executus_nb.run.settings", "_build", "executus_nb.store.sqlite"),
    ("executus_nb.run.settings", "_build", "executus_nb.sinks.audit"),
    # A pipeline is run by Executor.run, and is built on it (phases are runs).
    ("executus_nb.run.executor", "Executor.run", "executus_nb.pipeline"),
    # A pipeline's view and tables across its phases.
    ("executus_nb.pipeline", "PipelineRun.view", "executus_nb.nb.pipeline_view"),
    ("executus_nb.pipeline", "PipelineRun.steps_df", "executus_nb.frames"),
    ("executus_nb.pipeline", "PipelineRun.runs_df", "executus_nb.frames"),
    ("executus_nb.pipeline", "PipelineRun.usage_df", "executus_nb.frames"),
    ("executus_nb.pipeline", "PipelineRun.tool_calls_df", "executus_nb.frames"),
    # The fan-out's live grid.
    ("executus_nb.fanout", "Fanout.view", "executus_nb.nb.grid"),
    ("executus_nb.fanout", "Fanout._ipython_display_", "executus_nb.nb.display"),
    # A chat's tables.
    ("executus_nb.chat", "Chat.runs_df", "executus_nb.frames"),
    ("executus_nb.chat", "Chat.steps_df", "executus_nb.frames"),
    ("executus_nb.chat", "Chat.usage_df", "executus_nb.frames"),
    # A chat's live widget.
    ("executus_nb.chat", "Chat.view", "executus_nb.nb.chatview"),
    ("executus_nb.chat", "Chat._ipython_display_", "executus_nb.nb.display"),
    # A comparison's side-by-side HTML.
    ("executus_nb.compare", "Comparison._repr_html_", "executus_nb.nb.compare_html"),
}


@dataclass(frozen=True)
class Edge:
    """One import statement: who imports what, where (a function's qualified name, or None at module level),
    and whether it sits under ``if TYPE_CHECKING:`` (for type names only: never run)."""

    source: str
    target: str
    function: str | None
    line: int
    type_checking: bool = False


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement loads (``from pkg import mod`` names the module itself)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            here = module.split(".")
            if MODULES[module].name != "__init__.py":
                here.pop()
            here = here[: len(here) - (node.level - 1)]
            base = ".".join(here + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return [n for n in names if n == "executus_nb" or n.startswith("executus_nb.")]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, source: str | None = None) -> list[Edge]:
    """Every import of a package module by ``module``, module-level or lazy, TYPE_CHECKING blocks marked."""
    edges: list[Edge] = []

    def visit(node: ast.AST, scope: list[str], in_function: bool, typing_only: bool = False) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), scope, in_function, True)
                for stmt in child.orelse:  # the else branch of `if TYPE_CHECKING:` does run
                    visit(ast.Module(body=[stmt], type_ignores=[]), scope, in_function, typing_only)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                name = getattr(child, "name", "<lambda>")
                visit(child, [*scope, name], True, typing_only)
            elif isinstance(child, ast.ClassDef):
                visit(child, [*scope, child.name], in_function, typing_only)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                function = ".".join(scope) if in_function else None
                edges.extend(Edge(module, t, function, child.lineno, typing_only) for t in _targets(module, child))
            elif (
                isinstance(child, ast.Call)
                and ast.unparse(child.func) in ("importlib.import_module", "import_module")
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and str(child.args[0].value).startswith("executus_nb")
            ):
                edges.append(Edge(module, str(child.args[0].value), ".".join(scope) or None, child.lineno, typing_only))
                visit(child, scope, in_function, typing_only)
            else:
                visit(child, scope, in_function, typing_only)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8") if source is None else source), [], False)
    return edges


ALL_EDGES: list[Edge] = [edge for module in MODULES for edge in _imports(module)]
EDGES: list[Edge] = [edge for edge in ALL_EDGES if not edge.type_checking]  # the imports that run


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of the longest prefix that names ``module``."""
    best, index = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    if index < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return index


def _where(edge: Edge) -> str:
    place = f" in {edge.function}()" if edge.function else " at module level"
    return f"{edge.source}:{edge.line}{place} imports {edge.target}"


def _cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself): Tarjan."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for edge in edges:
        if edge.target in graph:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_every_module_is_in_a_layer():
    assert len(MODULES) > 30  # the walk found the package
    for module in MODULES:
        layer_of(module)


def test_module_level_imports_point_down_or_sideways():
    upward = [_where(e) for e in EDGES if e.function is None and layer_of(e.target) > layer_of(e.source)]
    assert upward == [], "imports that point up a layer:\n" + "\n".join(upward)


def test_lazy_imports_point_up_only_in_the_named_shims():
    upward = {
        (e.source, e.function, e.target): e
        for e in EDGES
        if e.function is not None and layer_of(e.target) > layer_of(e.source)
    }
    unlisted = [_where(e) for key, e in sorted(upward.items()) if key not in UPWARD_SHIMS]
    assert unlisted == [], (
        "lazy imports that point up a layer (move the code down, or list a display shim "
        "in UPWARD_SHIMS):\n" + "\n".join(unlisted)
    )


def test_the_named_shims_exist_so_the_list_stays_true():
    found = {(e.source, e.function, e.target) for e in EDGES}
    assert sorted(UPWARD_SHIMS - found) == []


def test_no_import_cycles_module_level_lazy_or_type_checking():
    cycles = _cycles(ALL_EDGES)
    lines = []
    for component in cycles:
        members = set(component)
        lines.append(" <-> ".join(component))
        lines.extend(
            dict.fromkeys(
                "    " + _where(e) + (" (TYPE_CHECKING)" if e.type_checking else "")
                for e in ALL_EDGES
                if e.source in members and e.target in members
            )
        )
    assert cycles == [], "modules that import each other (directly or round a circle):\n" + "\n".join(lines)


def test_a_type_checking_import_counts_for_cycles_not_for_direction():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from executus_nb.agent import Agent\n"
    edges = _imports("executus_nb.types.context", source)
    assert edges == [Edge("executus_nb.types.context", "executus_nb.agent", None, 3, type_checking=True)]
    back = Edge("executus_nb.agent", "executus_nb.types.context", None, 1)
    assert _cycles([*edges, back]) == [["executus_nb.agent", "executus_nb.types.context"]]


def test_the_cycle_finder_finds_a_lazy_cycle():
    made_up = [
        Edge("executus_nb.tool.policy", "executus_nb.run.ports", None, 1),
        Edge("executus_nb.run.ports", "executus_nb.tool.policy", "default_gate", 2),
    ]
    assert _cycles(made_up) == [["executus_nb.run.ports", "executus_nb.tool.policy"]]


def _private_names(modules: list[str]) -> dict[str, str]:
    """Private attribute names (``_x``, not ``_x_`` protocol names) that ``modules`` define, by name."""
    names: dict[str, str] = {}
    for module in modules:
        for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr
            else:
                continue
            if name.startswith("_") and not name.endswith("_"):
                names.setdefault(name, module)
    return names


@pytest.mark.parametrize(
    "upper",
    [
        "executus_nb.fanout",
        "executus_nb.chat",
        "executus_nb.schedule",
        "executus_nb.frames",
        "executus_nb.sinks",
        "executus_nb.nb",
    ],
)
def test_upper_layers_use_only_public_seams_of_the_run_layer(upper):
    # fanout once called executor._start(slots=...) and read run._future; the views read run._loop.
    below = [m for m in MODULES if layer_of(m) <= layer_of("executus_nb.run")]
    private = _private_names(below)
    reaches = []
    for module in (m for m in MODULES if m == upper or m.startswith(upper + ".")):
        for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and ast.unparse(node.value) not in ("self", "cls")
            ):
                reaches.append(f"{module}:{node.lineno} reads {ast.unparse(node)} (private to {private[node.attr]})")
    assert reaches == [], "private attributes of lower layers used from above:\n" + "\n".join(reaches)
