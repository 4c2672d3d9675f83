"""A hand-written stdio MCP server (no SDK, which would guard its stdout and its answers): it answers the
handshake and lists ``babble``, whose call gets a line that is not JSON-RPC and then no answer, and
``garble``, whose result is not a CallToolResult.  With ``--bad-list`` its tool list is malformed."""

import json
import sys
import time

BAD_LIST = "--bad-list" in sys.argv
TOOLS = [{"name": "babble", "inputSchema": {"type": "object"}}, {"name": "garble", "inputSchema": {"type": "object"}}]

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
        result = {"tools": [{"title": "no name, no schema"}]} if BAD_LIST else {"tools": TOOLS}
    elif method == "tools/call" and message["params"]["name"] == "babble":
        print("oops, a stray print", flush=True)
        time.sleep(3600)
        continue
    elif method == "tools/call":
        result = {"content": "not a list of blocks"}
    else:
        continue  # notifications
    print(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}), flush=True)
