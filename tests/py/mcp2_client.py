"""The MCP Python SDK 2.x (spec 2026-07-28: stateless, server/discover, per-request _meta)
against exai's /mcp or `exai mcp` (stdio), driven by tests/api/mcp.rs. Prints one JSON
document.

usage: mcp2_client.py http|stdio|cancel|cancel-stdio
env: EXAI_MCP_URL, EXAI_TOKEN, EXAI_MODEL, EXAI_SLOW_MODEL; for stdio EXAI_BIN, EXAI_WS_PORT.
"""

import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

import exai_mcp_env


def server(mode):
    if mode == "stdio":
        return StdioServerParameters(**exai_mcp_env.stdio_server())
    return streamable_http_client(
        os.environ["EXAI_MCP_URL"], http_client=create_mcp_http_client(headers=exai_mcp_env.http_headers())
    )


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def basic(mode):
    out = {}
    async with Client(server(mode)) as client:
        out["protocol"] = client.protocol_version
        info = client.session.server_info
        out["server"] = info.name if info else None
        tools = await client.list_tools()
        out["tools"] = [t.name for t in tools.tools]
        out["chat_schema"] = next(t.input_schema for t in tools.tools if t.name == "chat")
        chat = await client.call_tool("chat", {"prompt": "hello mcp", "model": os.environ["EXAI_MODEL"]})
        out["chat"] = {"text": text_of(chat), "isError": chat.is_error}
        version = await client.call_tool("version", {})
        out["version_structured"] = version.structured_content
        bad = await client.call_tool("chat", {"prompt": "x", "model": "no-such-model-anywhere"})
        out["bad"] = {"text": text_of(bad), "isError": bad.is_error}
        progress = []

        async def on_progress(p, total, message):
            progress.append({"progress": p, "message": message})

        slow = await client.call_tool(
            "chat",
            {"prompt": "slow one", "model": os.environ["EXAI_SLOW_MODEL"]},
            progress_callback=on_progress,
        )
        out["slow"] = {"text": text_of(slow), "isError": slow.is_error}
        out["progress"] = progress
    return out


async def cancel(mode):
    out = {}
    async with Client(server(mode)) as client:
        out["protocol"] = client.protocol_version
        first = asyncio.Event()

        async def on_progress(p, total, message):
            first.set()

        call = asyncio.create_task(
            client.call_tool(
                "chat",
                {"prompt": "never finishes", "model": os.environ["EXAI_SLOW_MODEL"]},
                progress_callback=on_progress,
            )
        )
        await asyncio.wait_for(first.wait(), 20)
        # The test says when: once it has seen the call hold the provider's slot.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        # Abandoning the call: on the 2026-07-28 HTTP wire the SDK closes the request's stream.
        call.cancel()
        try:
            await call
        except BaseException:
            pass
        out["cancelled"] = True
        tools = await client.list_tools()
        out["tools_after"] = len(tools.tools)
    return out


async def main():
    mode = sys.argv[1]
    if mode.startswith("cancel"):
        out = await cancel("stdio" if mode == "cancel-stdio" else "http")
    else:
        out = await basic(mode)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
