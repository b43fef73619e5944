"""What both MCP SDK clients (mcp1_client.py, mcp2_client.py) read from the environment the
tests set: how to start `exai mcp` over stdio, and the HTTP auth headers."""

import json
import os


def token():
    return os.environ.get("EXAI_TOKEN", "")


def stdio_server():
    """Keyword arguments of the SDK's StdioServerParameters for `exai mcp`."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "EXAI_WS_HOST": "127.0.0.1",
        "EXAI_WS_PORT": os.environ["EXAI_WS_PORT"],
        "EXAI_WS_TOKEN": token(),
    }
    env.update(json.loads(os.environ.get("EXAI_MCP_EXTRA_ENV", "{}")))
    args = ["mcp"] + json.loads(os.environ.get("EXAI_MCP_EXTRA_ARGS", "[]"))
    return {"command": os.environ["EXAI_BIN"], "args": args, "env": env}


def http_headers():
    return {"Authorization": f"Bearer {token()}"} if token() else {}
