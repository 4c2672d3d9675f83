"""executus_nb: bounded LLM agent runs you can watch, steer, count and multiply in a notebook.

Import is cheap: litellm, pandas and ipywidgets load on first use.
"""

from __future__ import annotations

import os

# litellm fetches its price list from the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from executus_nb.agent import Agent  # noqa: E402
from executus_nb.catalogue import AgentCatalogue, load_agents  # noqa: E402
from executus_nb.chat import Chat  # noqa: E402
from executus_nb.compare import Comparison  # noqa: E402
from executus_nb.errors import (  # noqa: E402
    AttachmentError,
    AuditWarning,
    BackendError,
    ConfigError,
    ContextWindowExceeded,
    DispatchRejected,
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
    WorkerLost,
)
from executus_nb.fanout import Fanout  # noqa: E402
from executus_nb.model import sim  # noqa: E402
from executus_nb.pipeline import Phase, Pipeline, PipelineRun  # noqa: E402
from executus_nb.run.attach import Attachment  # noqa: E402
from executus_nb.run.delivery import CallbackDelivery, FileDelivery, NotebookDelivery  # noqa: E402
from executus_nb.run.executor import Executor  # noqa: E402
from executus_nb.run.handle import Run  # noqa: E402
from executus_nb.run.model_critic import ModelCritic  # noqa: E402
from executus_nb.scale import ProcessPool, RayBackend  # noqa: E402
from executus_nb.schedule import Schedule  # noqa: E402
from executus_nb.sinks.audit import AuditLog  # noqa: E402
from executus_nb.skills import Skill, SkillCatalogue, load_skills  # noqa: E402
from executus_nb.store.protocol import EventStore, MemoryStore  # noqa: E402
from executus_nb.store.sqlite import SQLiteStore  # noqa: E402
from executus_nb.tool.decorator import Tool  # noqa: E402
from executus_nb.tool.mcp import MCPServer  # noqa: E402
from executus_nb.tool.namespace import tool  # noqa: E402
from executus_nb.tool.palette import GlobPalette, IdentityPalette  # noqa: E402
from executus_nb.tool.policy import Policy  # noqa: E402
from executus_nb.tool.registry import ToolRegistry  # noqa: E402
from executus_nb.types.budget import Budget  # noqa: E402
from executus_nb.types.context import RunContext  # noqa: E402
from executus_nb.types.events import Compacted, Delivered, Reviewed  # noqa: E402
from executus_nb.types.result import RunResult, Step  # noqa: E402
from executus_nb.types.status import RunStatus  # noqa: E402
from executus_nb.types.stream import TextDelta  # noqa: E402
from executus_nb.types.usage import Usage  # noqa: E402

__version__ = "0.1.0"

__all__ = [
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
