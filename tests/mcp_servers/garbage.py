"""A program that is no MCP server: it prints text that is not JSON-RPC on stdout, then waits."""

import sys
import time

print("hello, this is not JSON-RPC", flush=True)
sys.stdin.readline()
time.sleep(60)
