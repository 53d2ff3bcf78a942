"""A minimal outside client of the test agent for its tests: httpx plus the edge's MTConnect parsers."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from edge.sources.mtconnect.multipart import MultipartReader, boundary_from_content_type
from edge.sources.mtconnect.protocol import AgentErrors, Streams, parse_streams
from twinsim.mtconnect import Record

Doc = Streams | AgentErrors


async def read_stream(client: httpx.AsyncClient, path: str, params: dict[str, int | str],
                      stop: Callable[[list[Doc]], bool]) -> list[Doc]:
    """Stream ``path`` (multipart) and parse its parts until ``stop(parts so far)`` or the stream ends."""
    docs: list[Doc] = []
    async with client.stream("GET", path, params=params) as response:
        assert response.status_code == 200, response.status_code
        reader = MultipartReader(boundary_from_content_type(response.headers["content-type"]))
        async for data in response.aiter_bytes():
            for part in reader.feed(data):
                docs.append(parse_streams(part))
                if stop(docs):
                    return docs
    return docs


def observed(docs: list[Doc]) -> list[tuple[str, int, float, float | str | None]]:
    return [(o.item_id, o.sequence, o.timestamp, o.value) for d in docs if isinstance(d, Streams)
            for o in d.observations]


def expected(records: list[Record]) -> list[tuple[str, int, float, float | str | None]]:
    """What a client should read for the agent's records: numeric SAMPLEs as numbers."""
    out: list[tuple[str, int, float, float | str | None]] = []
    for r in records:
        value: float | str | None = r.value
        if r.value is not None and r.item.category == "SAMPLE" and r.item.representation is None:
            try:
                value = float(r.value)
            except ValueError:
                value = r.value
        out.append((r.item_id, r.sequence, r.timestamp, value))
    return out
