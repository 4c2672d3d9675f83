"""A small MCP server (stdio) for the tests: ``crash`` ends its process mid-call, ``stall`` never
answers, ``env_var`` reads its environment, ``grow`` adds a tool and says its list changed."""

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("toy")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


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


@server.tool()
def env_var(name: str) -> str:
    """The value of an environment variable of the server."""
    return os.environ.get(name, "")


def shout(text: str) -> str:
    """Shout the text."""
    return text.upper()


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool ``shout`` and tell the client that the tool list changed."""
    server.add_tool(shout)
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    server.run()
