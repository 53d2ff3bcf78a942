"""The agent's HTTP side against malformed and hostile requests: a clear status, a closed connection,
and an agent that goes on serving."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from twinsim.mtconnect import AgentSettings, MTConnectAgent
from twinsim.mtconnect.http import MAX_HEAD


@pytest.fixture
async def agent() -> AsyncIterator[MTConnectAgent]:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as a:
        yield a


async def _exchange(agent: MTConnectAgent, request: bytes) -> bytes:
    """Send raw bytes; read until the agent closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", agent.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /probe HTTP/1.1\r\nX-Pad: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n", b"431"),
        (b"POST /probe HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"413"),
        (b"GET /probe HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"413"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),  # a TLS hello to a plain port
        (b"GET /probe\r\n\r\n", b"400"),
        (b"GET /probe HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /sample?" + b"&".join(b"a%d=1" % i for i in range(30)) + b" HTTP/1.1\r\n\r\n", b"400"),
    ],
)
async def test_a_malformed_request_gets_an_error_and_the_connection_closes(agent: MTConnectAgent,
                                                                           request_bytes: bytes,
                                                                           status: bytes) -> None:
    answer = await _exchange(agent, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert b"MTConnectError" in answer and b"Connection: close" in answer
    assert (await _exchange(agent, b"GET /probe HTTP/1.1\r\nConnection: close\r\n\r\n")).startswith(b"HTTP/1.1 200")


async def test_keep_alive_serves_several_requests_on_one_connection(agent: MTConnectAgent) -> None:
    answer = await _exchange(agent, b"GET /probe HTTP/1.1\r\n\r\nGET /current HTTP/1.1\r\n\r\n"
                                    b"GET /asset/none HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.count(b"HTTP/1.1 404 Not Found") == 1
    assert b"<MTConnectDevices" in answer and b"<MTConnectStreams" in answer and b"ASSET_NOT_FOUND" in answer


async def test_http_1_0_closes_after_the_answer(agent: MTConnectAgent) -> None:
    answer = await _exchange(agent, b"GET /current HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1
