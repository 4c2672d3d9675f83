"""An MCP server (stdio) whose ``crash`` tool ends its process mid-call; ``echo`` answers, ``stall`` never does."""

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("crashing")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
def crash() -> str:
    """End the server's process without answering."""
    print("crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
async def stall() -> str:
    """Never answer (until the client gives up)."""
    await anyio.sleep(3600)
    return "late"


if __name__ == "__main__":
    server.run()
