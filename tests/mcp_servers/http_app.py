"""A streamable-HTTP MCP server served from a thread of the test process, on a socket bound to 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("web")


@app.tool()
def greet(name: str) -> str:
    """Greet someone."""
    return f"hello {name}"


@app.tool()
def authorization(ctx: Context) -> str:
    """The Authorization header this request carried."""
    return (ctx.headers or {}).get("authorization", "")


class Served:
    """The app served on a free port until ``stop()``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"
        config = uvicorn.Config(app.streamable_http_app(), log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> Served:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the MCP HTTP test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
