"""The public surface of ``executus_nb`` and the promise that importing it is cheap and offline-safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import executus_nb

EXPECTED_ALL = [
    "Agent",
    "AgentCatalogue",
    "Attachment",
    "AttachmentError",
    "AuditLog",
    "AuditWarning",
    "BackendError",
    "Budget",
    "CallbackDelivery",
    "Chat",
    "Compacted",
    "Comparison",
    "ConfigError",
    "ContextWindowExceeded",
    "Delivered",
    "DispatchRejected",
    "EventStore",
    "ExecutusError",
    "Executor",
    "Fanout",
    "FileDelivery",
    "GlobPalette",
    "IdentityPalette",
    "MCPServer",
    "MaxStepsExceeded",
    "MemoryStore",
    "ModelCallError",
    "ModelCritic",
    "NoPendingApproval",
    "NotebookDelivery",
    "OutputValidationError",
    "Phase",
    "Pipeline",
    "PipelineRun",
    "Policy",
    "ProcessPool",
    "RayBackend",
    "Reviewed",
    "Run",
    "RunCancelled",
    "RunContext",
    "RunError",
    "RunResult",
    "RunStatus",
    "RunStopped",
    "RunTimeout",
    "SQLiteStore",
    "SSRFBlocked",
    "Schedule",
    "SimScriptExhausted",
    "Skill",
    "SkillCatalogue",
    "Step",
    "StopRun",
    "TextDelta",
    "Tool",
    "ToolError",
    "ToolRegistrationError",
    "ToolRegistry",
    "Usage",
    "UserError",
    "WorkerLost",
    "load_agents",
    "load_skills",
    "sim",
    "tool",
]

HEAVY = ["litellm", "pandas", "ipywidgets", "mcp"]


def python(code: str, **env_changes: str | None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON value, returned here."""
    env = dict(os.environ)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_all_is_exactly_the_public_set():
    assert executus_nb.__all__ == EXPECTED_ALL


def test_every_public_name_exists():
    missing = [name for name in executus_nb.__all__ if not hasattr(executus_nb, name)]
    assert missing == []


def test_errors_form_one_tree():
    errors = [name for name in executus_nb.__all__ if name.endswith("Error") or name == "SSRFBlocked"]
    assert len(errors) >= 8
    for name in errors:
        assert issubclass(getattr(executus_nb, name), executus_nb.ExecutusError), name
    assert issubclass(executus_nb.UserError, ValueError)


def test_what_a_user_of_compaction_touches_is_public():
    # the event to look for in a log, and the stop a custom compactor may raise (the run ends failed)
    from executus_nb.errors import ContextWindowExceeded
    from executus_nb.types.events import Compacted

    assert executus_nb.Compacted is Compacted and executus_nb.ContextWindowExceeded is ContextWindowExceeded
    assert issubclass(executus_nb.ContextWindowExceeded, executus_nb.StopRun)  # a stop, like every StopRun


def test_import_does_not_load_litellm_pandas_or_ipywidgets():
    code = f"import json, sys; import executus_nb; print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    assert python(code) == {name: False for name in HEAVY}


def test_defining_agents_tools_and_models_stays_light():
    code = """
import json, sys
from executus_nb import Agent, Executor, sim, tool

@tool
def add(a: int, b: int) -> int:
    "Add."
    return a + b

model = sim.scripted([sim.call("add", a=1, b=2), sim.reply("3")])
Executor(prices={model: {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}})
Agent(name="calc", tools=[add], model=model)
print(json.dumps({m: m in sys.modules for m in %r}))
""" % (HEAVY,)  # noqa: UP031 — the script has braces of its own, so no str.format
    assert python(code) == {name: False for name in HEAVY}


def test_import_sets_the_local_cost_map_switch():
    code = "import json, os; import executus_nb; print(json.dumps(os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP')))"
    assert python(code, LITELLM_LOCAL_MODEL_COST_MAP=None) == "True"
