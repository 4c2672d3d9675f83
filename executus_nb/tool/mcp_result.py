"""An MCP ``CallToolResult`` as a tool result: the text the model reads, or a ``ToolError`` for ``isError``.

A tool's answer to the model is text here (a ``tool`` message), so text blocks are kept as
they are, an embedded text resource is given with its URI, and images, audio and binary
resources are described (kind, MIME type, size) rather than pasted as base64.  Blocks are
read by their ``type`` tag, so this module needs no import of the SDK.
"""

from __future__ import annotations

import json
from typing import Any

from executus_nb.errors import ToolError


def result_text(result: Any) -> str:
    """The text of a ``CallToolResult``; raises ``ToolError`` with that text when the server flags an error."""
    parts = [block_text(block) for block in result.content or ()]
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts = [json.dumps(structured, ensure_ascii=False, default=str)]
    text = "\n".join(parts)
    if result.is_error:
        raise ToolError(text or "the MCP tool reported an error without a message")
    return text


def block_text(block: Any) -> str:
    """One content block as text (text as is; other kinds described by what they are)."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind} {block.mime_type}, {_decoded_size(block.data):,} bytes]"
    if kind == "resource_link":
        about = ", ".join(filter(None, [getattr(block, "name", None), getattr(block, "mime_type", None)]))
        return f"[resource link {block.uri}{f' ({about})' if about else ''}]"
    if kind == "resource":
        contents = block.resource
        if getattr(contents, "text", None) is not None:
            return f"[resource {contents.uri}]\n{contents.text}"
        mime = f"{contents.mime_type}, " if getattr(contents, "mime_type", None) else ""
        return f"[resource {contents.uri} ({mime}{_decoded_size(getattr(contents, 'blob', '')):,} bytes)]"
    return f"[{kind or type(block).__name__} content]"


def _decoded_size(data: str) -> int:
    """The byte size of base64 ``data`` without decoding it."""
    data = data.strip()
    return max(0, len(data) * 3 // 4 - data[-2:].count("="))
