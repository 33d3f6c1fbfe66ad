"""The app as MCP tools, through a real MCP client (the ``mcp`` package, streamable HTTP).

An agent sees one tool per public endpoint, named for what it does, with its parameters
described; it can call depth and segment with an image sent inline as a data URL.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
from typing import Any

import pytest

import app
from tests.conftest import free_port

CAT = app.ASSETS / "cat.jpg"
PUBLIC = {"segment", "segment_everything", "segment_concepts", "depth", "detect", "ask", "compare", "workflow", "track",
          "track_concepts", "status"}


@pytest.fixture(scope="module")
def mcp_url(ctx: Any) -> Any:
    demo = app.build_app(ctx)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True,
                            **app.launch_options(port=free_port(), mcp=True, ctx=ctx, demo=demo))  # fmt: skip
    try:
        yield url.rstrip("/") + "/gradio_api/mcp/"
    finally:
        demo.close()


def _session(url: str, work: Any) -> Any:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def main() -> Any:
        async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    # In a thread of its own: Playwright's sync API (the browser tests) keeps an event loop
    # running in the main thread for the whole session, and asyncio.run refuses to nest.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=300)


def _image() -> str:
    return "data:image/jpeg;base64," + base64.b64encode(CAT.read_bytes()).decode()


def test_tools_have_their_public_names_and_described_parameters(mcp_url: str) -> None:
    async def work(session: Any) -> Any:
        return (await session.list_tools()).tools

    tools = {t.name: t for t in _session(mcp_url, work)}
    assert set(tools) == PUBLIC, sorted(tools)
    for name, tool in tools.items():
        assert tool.description and len(tool.description) > 20, name
        props = tool.inputSchema.get("properties", {})
        for param, schema in props.items():
            assert schema.get("description"), f"{name}.{param} is not described"
    assert list(tools["depth"].inputSchema["properties"])[:2] == ["image", "model"]
    assert "model" in tools["segment"].inputSchema["properties"] and "key" not in tools["segment"].inputSchema["properties"]


def test_depth_and_segment_run_through_mcp(mcp_url: str) -> None:
    async def work(session: Any) -> Any:
        depth = await session.call_tool("depth", {"image": _image(), "model": "depth-anything-v2-small",
                                                   "colormap": "Spectral_r", "invert": False, "fov_degrees": 60})  # fmt: skip
        segment = await session.call_tool("segment", {"image": _image(), "points": [[100, 80]], "labels": [1],
                                                       "box": None, "model": "sam2.1-hiera-tiny", "multimask": True})  # fmt: skip
        bad = await session.call_tool("segment", {"image": _image(), "points": [[9000, 80]], "labels": [1],
                                                   "box": None, "model": "sam2.1-hiera-tiny", "multimask": True})  # fmt: skip
        return depth, segment, bad

    depth, segment, bad = _session(mcp_url, work)
    assert not depth.isError, depth.content
    assert "depth16.png" in depth.content[0].text and "relative_inverse" in json.dumps([c.text for c in depth.content])
    assert not segment.isError, segment.content
    text = segment.content[0].text
    assert "'width': 451" in text and "'counts':" in text and "'scores':" in text
    assert bad.isError and "outside the image" in bad.content[0].text
