"""executus_nb: bounded LLM agent runs you can watch, steer, count and multiply in a notebook.

Import is cheap: litellm, pandas and ipywidgets load on first use.
"""

from __future__ import annotations

import os

# litellm fetches its price list from the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from executus_nb.agent import Agent  # noqa: E402
from executus_nb.chat import Chat  # noqa: E402
from executus_nb.compare import Comparison  # noqa: E402
from executus_nb.errors import (  # noqa: E402
    ConfigError,
    ContextWindowExceeded,
    ExecutusError,
    MaxStepsExceeded,
    ModelCallError,
    NoPendingApproval,
    OutputValidationError,
    RunCancelled,
    RunError,
    RunStopped,
    RunTimeout,
    SimScriptExhausted,
    SSRFBlocked,
    StopRun,
    ToolError,
    ToolRegistrationError,
    UserError,
)
from executus_nb.fanout import Fanout  # noqa: E402
from executus_nb.model import sim  # noqa: E402
from executus_nb.pipeline import Phase, Pipeline, PipelineRun  # noqa: E402
from executus_nb.run.executor import Executor  # noqa: E402
from executus_nb.run.handle import Run  # noqa: E402
from executus_nb.store.protocol import EventStore, MemoryStore  # noqa: E402
from executus_nb.store.sqlite import SQLiteStore  # noqa: E402
from executus_nb.tool.decorator import Tool  # noqa: E402
from executus_nb.tool.mcp import MCPServer  # noqa: E402
from executus_nb.tool.namespace import tool  # noqa: E402
from executus_nb.tool.policy import Policy  # noqa: E402
from executus_nb.tool.registry import ToolRegistry  # noqa: E402
from executus_nb.types.budget import Budget  # noqa: E402
from executus_nb.types.context import RunContext  # noqa: E402
from executus_nb.types.events import Compacted  # noqa: E402
from executus_nb.types.result import RunResult, Step  # noqa: E402
from executus_nb.types.status import RunStatus  # noqa: E402
from executus_nb.types.stream import TextDelta  # noqa: E402
from executus_nb.types.usage import Usage  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Budget",
    "Chat",
    "Compacted",
    "Comparison",
    "ConfigError",
    "ContextWindowExceeded",
    "EventStore",
    "ExecutusError",
    "Executor",
    "Fanout",
    "MCPServer",
    "MaxStepsExceeded",
    "MemoryStore",
    "ModelCallError",
    "NoPendingApproval",
    "OutputValidationError",
    "Phase",
    "Pipeline",
    "PipelineRun",
    "Policy",
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
    "SimScriptExhausted",
    "Step",
    "StopRun",
    "TextDelta",
    "Tool",
    "ToolError",
    "ToolRegistrationError",
    "ToolRegistry",
    "Usage",
    "UserError",
    "sim",
    "tool",
]
