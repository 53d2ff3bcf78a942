"""`twinedge probe mtconnect`: what the agent serves, and plain errors for the ways it can fail."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from twinsim.mtconnect import AgentSettings, MTConnectAgent


async def twinedge(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "edge.cli", "probe", "mtconnect", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_it_shows_the_header_devices_item_counts_and_current_values() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, instance_id=4242)) as agent:
        await agent.replay_done.wait()
        code, out = await twinedge(agent.url)
        assert code == 0, out
        assert f"MTConnect agent {agent.url}: version 2.0" in out and "instanceId 4242" in out
        assert f"sequences 1..{agent.buffer.next_sequence - 1:,} (next {agent.buffer.next_sequence:,})" in out
        assert "device OKUMA (uuid OKUMA.123456) -> frames of OKUMA: 102 data items (SAMPLE 45, EVENT 47, " \
               "CONDITION 10)" in out
        assert "LX1actm" in out and "MILLIMETER" in out
        code, out = await twinedge(agent.url, "--json")
        result = json.loads(out)
        assert result["header"]["instance_id"] == 4242
        assert [d["device_id"] for d in result["devices"]] == ["OKUMA", "Mazak"]
        assert result["devices"][1]["unavailable"] == 118


async def test_an_unreachable_agent_is_said_plainly() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    code, out = await twinedge(f"http://127.0.0.1:{port}")
    assert code == 2
    assert out.strip() == f"error: cannot reach the MTConnect agent at http://127.0.0.1:{port}: connection failed " \
                          "(All connection attempts failed)"


async def _serve(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                 ) -> AsyncIterator[str]:
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


@pytest.fixture
async def web_page() -> AsyncIterator[str]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<html><body>Router login</body></html>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async for url in _serve(handler):
        yield url


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    async for url in _serve(handler):
        yield url


async def test_a_web_page_that_is_not_an_agent_is_said_plainly(web_page: str) -> None:
    code, out = await twinedge(web_page)
    assert code == 2
    assert out.startswith(f"error: {web_page} did not answer as an MTConnect agent: not an MTConnect document: "
                          "root <html> has no namespace")
    assert "Traceback" not in out


async def test_an_agent_that_does_not_answer_times_out_plainly(silent: str) -> None:
    code, out = await twinedge(silent, "--timeout", "300ms")
    assert code == 2
    assert out.strip() == f"error: the MTConnect agent at {silent} did not answer /probe within 0.3 s"


async def test_a_missing_url_is_a_usage_error() -> None:
    code, out = await twinedge()
    assert code == 78
    assert "give the agent's URL" in out
