"""What the MTConnect source's tests share: a sink that can hold puts, the source started as a task, and the
agent's observations as the series a user would see per key."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.sources.base import Position
from edge.sources.mtconnect.config import MTConnectSourceConfig
from edge.sources.mtconnect.mapping import cut, sensor_key
from edge.sources.mtconnect.source import MTConnectSource
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame
from tests.support import CollectingSink
from twinsim.mtconnect import MTConnectAgent, Record


@dataclass
class HoldingSink(CollectingSink):
    """A CollectingSink whose puts wait while ``hold`` is clear (a store that fell behind); ``until(pred)``."""

    hold: asyncio.Event = field(default_factory=asyncio.Event)
    puts: int = 0

    def __post_init__(self) -> None:
        self.hold.set()

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        await self.hold.wait()
        self.puts += 1
        await super().put(frames, durable=durable, events=events, documents=documents, position=position)

    async def until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


DURATIONS = ("heartbeat", "interval", "timeout", "poll_interval", "stream_retry")


def config(agent: MTConnectAgent, **kw: Any) -> MTConnectSourceConfig:
    """The source's config for ``agent``; durations in seconds."""
    raw = {"kind": "mtconnect", "name": "lathe", "url": agent.url, "heartbeat": 0.5, "interval": 0.0,
           "timeout": 5.0, **kw}
    return MTConnectSourceConfig.model_validate({k: f"{v}s" if k in DURATIONS else v for k, v in raw.items()})


@contextlib.asynccontextmanager
async def running(source: MTConnectSource) -> AsyncIterator[MTConnectSource]:
    task = asyncio.create_task(source.run(), name="mtconnect-source")
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def caught_up(source: MTConnectSource, agent: MTConnectAgent) -> Callable[[], bool]:
    return lambda: (source.health.detail["next_sequence"] == agent.buffer.next_sequence
                    and source.health.detail["instance_id"] == agent.instance_id)


async def replay_whole(agent: MTConnectAgent, source: MTConnectSource, sink: HoldingSink, timeout: float = 60
                       ) -> None:
    """Once the source has read what the paused agent holds: replay the rest of the recording, and wait until the
    source has read all of it."""
    await sink.until(caught_up(source, agent))
    agent.resume()
    await agent.replay_done.wait()
    await sink.until(caught_up(source, agent), timeout=timeout)


def expected_value(rec: Record) -> float | str | None:
    if rec.value is None:
        return None
    if rec.item.category == "SAMPLE" and rec.item.representation is None:
        with contextlib.suppress(ValueError):
            number = float(rec.value)
            if math.isfinite(number):
                return number
    return cut(rec.value)


def agent_series(records: Sequence[Record], device_ids: dict[str, str]) -> dict[tuple[str, str], list[Any]]:
    """Per (device id, key): the values in sequence order (None: UNAVAILABLE)."""
    out: dict[tuple[str, str], list[Any]] = {}
    for rec in sorted(records, key=lambda r: (r.instance_id, r.sequence)):
        out.setdefault((device_ids[rec.item.device_uuid], sensor_key(rec.item_id)), []).append(expected_value(rec))
    return out


def frame_series(frames: Sequence[TelemetryFrame]) -> dict[tuple[str, str], list[Any]]:
    """Per (device id, key): the values the frames carry, in frame order (None: flagged unavailable)."""
    out: dict[tuple[str, str], list[Any]] = {}
    for frame in frames:
        for key, value in frame.sensors.items():
            if key.endswith(".quality"):
                if value == "unavailable":
                    out.setdefault((frame.device_id, key.removesuffix(".quality")), []).append(None)
                continue
            out.setdefault((frame.device_id, key), []).append(value)
    return out
