"""``web_fetch``: the readable text of a web page, size-capped, behind the SSRF guard."""

from __future__ import annotations

from collections.abc import Iterable

from executus_nb.errors import ConfigError
from executus_nb.tool.decorator import Tool
from executus_nb.tool.fetch import fetch_text
from executus_nb.tool.ssrf import _parse_allow_list

DEFAULT_MAX_BYTES = 1_000_000
FETCH_TIMEOUT_S = 20.0


def make_web_fetch(
    *, allow_private: Iterable[str] = (), max_bytes: int = DEFAULT_MAX_BYTES, name: str = "web_fetch"
) -> Tool:
    """A ``web_fetch`` tool that may also reach the private hosts or networks in ``allow_private``.

    ``allow_private`` entries are host names or CIDR networks (see ``executus_nb.tool.ssrf``).
    """
    allow = (allow_private,) if isinstance(allow_private, str) else tuple(allow_private)
    _parse_allow_list(allow)  # a bad entry is a ConfigError now, not at the model's first call
    if max_bytes < 1:
        raise ConfigError(f"max_bytes must be at least 1, not {max_bytes}")

    async def web_fetch(url: str) -> str:
        """Fetch a web page (http or https) and return its readable text, with the final URL and status.

        Args:
            url: The full URL to fetch, e.g. "https://example.com/page".
        """
        page = await fetch_text(url, max_bytes=max_bytes, timeout_s=FETCH_TIMEOUT_S, allow_private=allow)
        header = [f"URL: {page.final_url}", f"Status: {page.status} ({page.content_type})"]
        if page.truncated:
            header.append(f"[truncated: only the first {max_bytes:,} bytes of the page were read]")
        return "\n".join(header) + "\n\n" + page.text

    return Tool(web_fetch, name=name, timeout_s=FETCH_TIMEOUT_S + 5)


web_fetch = make_web_fetch()
