"""``current_time``: the current date and time in an IANA time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from executus_nb.errors import ToolError
from executus_nb.tool.decorator import tool


@tool(timeout_s=5)
def current_time(timezone: str = "UTC") -> str:
    """The current date and time as ISO 8601 (e.g. 2025-01-31T14:05:09+01:00) in an IANA time zone.

    Args:
        timezone: An IANA time zone name such as "UTC", "Europe/Paris" or "America/New_York".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ToolError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'UTC', 'Europe/Paris' or 'America/New_York'"
        ) from None
    return datetime.now(zone).isoformat(timespec="seconds")
