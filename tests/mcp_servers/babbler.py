"""A hand-written stdio MCP server (no SDK, which would guard its stdout): it answers the handshake and
lists one tool, ``babble``, whose call gets a line that is not JSON-RPC and then no answer."""

import json
import sys
import time

for line in sys.stdin:
    message = json.loads(line)
    method, request_id = message.get("method"), message.get("id")
    if method == "initialize":
        result = {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "babbler", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [{"name": "babble", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        print("oops, a stray print", flush=True)
        time.sleep(3600)
        continue
    else:
        continue  # notifications
    print(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}), flush=True)
