"""Common opt-in tools: web fetch, workspace files, a safe calculator and the current time."""

from executus_nb.tool.common.calc import calculator
from executus_nb.tool.common.clock import current_time
from executus_nb.tool.common.files import file_tools
from executus_nb.tool.common.web import make_web_fetch, web_fetch

__all__ = ["calculator", "current_time", "file_tools", "make_web_fetch", "web_fetch"]
