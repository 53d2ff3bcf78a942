"""HTTP to an MTConnect agent (httpx): probe, current, sample, asset, and the ``/sample`` multipart stream.

Foreign errors become ours here: ``AgentUnreachable`` (no connection, a timeout, a cut stream),
``ProtocolError`` (an answer that is not an MTConnect document), ``StreamUnsupported`` (the agent or a proxy
answers a streaming request with something that is not a multipart stream). Every answer is read within
``MAX_DOCUMENT_BYTES``; a stream part within the same bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx

from edge.sources.mtconnect.multipart import MultipartReader, boundary_from_content_type
from edge.sources.mtconnect.protocol import (
    MAX_DOCUMENT_BYTES,
    MAX_PROBE_BYTES,
    AgentErrors,
    Asset,
    Probe,
    ProtocolError,
    Streams,
    parse_assets,
    parse_probe,
    parse_streams,
)
from shared.errors import TwinedgeError

__all__ = ["AgentClient", "AgentUnreachable", "StreamUnsupported"]

TOTAL_TIMEOUTS = 3  # a whole answer (probe, current, sample, asset) may take this many read timeouts


class AgentUnreachable(TwinedgeError):
    """No answer from the agent: refused, timed out, cut off."""


class StreamUnsupported(TwinedgeError):
    """A streaming request got an answer that is not a multipart stream."""


class AgentClient:
    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False,
                                       headers={"Accept": "text/xml, application/xml"})

    async def close(self) -> None:
        await self._http.aclose()

    def _where(self, path: str) -> str:
        return f"{self.url}/{path}"

    async def _get(self, path: str, params: dict[str, Any] | None = None, *, most: int = MAX_DOCUMENT_BYTES) -> bytes:
        # httpx bounds each read, not the whole answer: an agent trickling bytes would hold us for ever.
        limit = TOTAL_TIMEOUTS * self.timeout
        try:
            async with asyncio.timeout(limit), self._http.stream("GET", self._where(path), params=params) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > most:
                        raise ProtocolError(f"the answer to /{path} is larger than {most:,} bytes")
                if response.status_code >= 400 and not body.lstrip().startswith(b"<"):
                    raise ProtocolError(f"the agent answered /{path} with HTTP {response.status_code} and no "
                                        "MTConnect document")
                return bytes(body)
        except httpx.TimeoutException:
            raise AgentUnreachable(f"the MTConnect agent at {self.url} did not answer /{path} within "
                                   f"{self.timeout:g} s") from None
        except TimeoutError:
            raise AgentUnreachable(f"the MTConnect agent at {self.url} did not finish its answer to /{path} within "
                                   f"{limit:g} s") from None
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"cannot reach the MTConnect agent at {self.url}: {_plain(exc)}") from None

    async def probe(self) -> Probe | AgentErrors:
        return parse_probe(await self._get("probe", most=MAX_PROBE_BYTES))

    async def current(self) -> Streams | AgentErrors:
        return parse_streams(await self._get("current"))

    async def sample(self, start: int, count: int) -> Streams | AgentErrors:
        return parse_streams(await self._get("sample", {"from": start, "count": count}))

    async def asset(self, asset_id: str) -> tuple[Asset, ...] | AgentErrors:
        return parse_assets(await self._get("asset/" + urllib.parse.quote(asset_id, safe="")))

    @contextlib.asynccontextmanager
    async def stream(self, start: int, count: int, interval: float, heartbeat: float
                     ) -> AsyncIterator[AsyncIterator[Streams | AgentErrors]]:
        """``/sample`` as a multipart stream: the documents of its parts as they come. A stream silent for
        two heartbeats raises AgentUnreachable (it is dead)."""
        params = {"from": start, "count": count, "interval": int(interval * 1000),
                  "heartbeat": max(10, int(heartbeat * 1000))}
        timeout = httpx.Timeout(self.timeout, read=2 * heartbeat + 0.05)
        try:
            async with self._http.stream("GET", self._where("sample"), params=params, timeout=timeout) as response:
                ctype = response.headers.get("content-type", "")
                if not ctype.lower().startswith("multipart/"):
                    body = await _bounded(response)
                    yield _single(body, ctype)
                    return
                reader = MultipartReader(boundary_from_content_type(ctype), max_part=MAX_DOCUMENT_BYTES)
                yield self._parts(response, reader, 2 * heartbeat + self.timeout)
        except httpx.TimeoutException:
            raise AgentUnreachable(f"the stream from the MTConnect agent at {self.url} was silent for two "
                                   f"heartbeats ({2 * heartbeat:g} s)") from None
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"the stream from the MTConnect agent at {self.url} broke: {_plain(exc)}") from None

    async def _parts(self, response: httpx.Response, reader: MultipartReader, limit: float
                     ) -> AsyncIterator[Streams | AgentErrors]:
        """The parts' documents; bytes that keep coming without completing a part (heartbeats included) within
        ``limit`` seconds are a dead stream too."""
        last = time.monotonic()
        async for chunk in response.aiter_bytes():
            parts = reader.feed(chunk)
            if not parts and time.monotonic() - last > limit:
                raise AgentUnreachable(f"the stream from the MTConnect agent at {self.url} sent no complete part "
                                       f"in {limit:g} s")
            for part in parts:
                yield parse_streams(part)
            if parts:
                last = time.monotonic()  # after the parts were taken: storing them is not the agent's time


async def _bounded(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ProtocolError(f"the answer is larger than {MAX_DOCUMENT_BYTES:,} bytes")
    return bytes(body)


async def _single(body: bytes, ctype: str) -> AsyncIterator[Streams | AgentErrors]:
    """A streaming request answered with one document: an error document is the answer; anything else means
    the stream does not work here (a proxy, an agent without streaming)."""
    doc: Streams | AgentErrors | None = None
    with contextlib.suppress(ProtocolError):
        doc = parse_streams(body)
    if isinstance(doc, AgentErrors):
        yield doc
        return
    raise StreamUnsupported(f"the agent answered a streaming request with {ctype or 'no Content-Type'}, not a "
                            "multipart stream")


def _plain(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({text})"
    return text
