"""The MCP Python SDK 1.x (spec 2025-11-25: initialize, Mcp-Session-Id) against exai's /mcp
or `exai mcp` (stdio), driven by tests/api/mcp.rs. Prints one JSON document.

usage: mcp1_client.py http|stdio|cancel|cancel-stdio
env: EXAI_MCP_URL, EXAI_TOKEN, EXAI_MODEL, EXAI_SLOW_MODEL; for stdio EXAI_BIN, EXAI_WS_PORT.
"""

import asyncio
import json
import os
import sys

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

import exai_mcp_env


def transport(mode):
    if mode == "stdio":
        return stdio_client(StdioServerParameters(**exai_mcp_env.stdio_server()))
    return streamablehttp_client(os.environ["EXAI_MCP_URL"], headers=exai_mcp_env.http_headers())


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def basic(mode):
    out = {}
    async with transport(mode) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol"] = init.protocolVersion
            out["server"] = init.serverInfo.name
            tools = await session.list_tools()
            out["tools"] = [t.name for t in tools.tools]
            out["chat_schema"] = next(t.inputSchema for t in tools.tools if t.name == "chat")
            chat = await session.call_tool("chat", {"prompt": "hello mcp", "model": os.environ["EXAI_MODEL"]})
            out["chat"] = {"text": text_of(chat), "isError": chat.isError}
            version = await session.call_tool("version", {})
            out["version_structured"] = version.structuredContent
            bad = await session.call_tool("chat", {"prompt": "x", "model": "no-such-model-anywhere"})
            out["bad"] = {"text": text_of(bad), "isError": bad.isError}
            progress = []

            async def on_progress(p, total, message):
                progress.append({"progress": p, "message": message})

            slow = await session.call_tool(
                "chat",
                {"prompt": "slow one", "model": os.environ["EXAI_SLOW_MODEL"]},
                progress_callback=on_progress,
            )
            out["slow"] = {"text": text_of(slow), "isError": slow.isError}
            out["progress"] = progress
    return out


async def cancel(mode):
    out = {}
    async with transport(mode) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            first = asyncio.Event()

            async def on_progress(p, total, message):
                first.set()

            call = asyncio.create_task(
                session.call_tool(
                    "chat",
                    {"prompt": "never finishes", "model": os.environ["EXAI_SLOW_MODEL"]},
                    progress_callback=on_progress,
                )
            )
            await asyncio.wait_for(first.wait(), 20)
            # The test says when: once it has seen the call hold the provider's slot.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            # The id of the call just made (the session numbers requests 0, 1, …).
            request_id = session._request_id - 1
            await session.send_notification(
                types.ClientNotification(
                    types.CancelledNotification(
                        params=types.CancelledNotificationParams(requestId=request_id, reason="test")
                    )
                )
            )
            out["cancelled_request"] = request_id
            await asyncio.sleep(0.3)
            call.cancel()
            try:
                await call
            except BaseException:
                pass
            # The session still works after the cancellation.
            tools = await session.list_tools()
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
