"""Fixtures of the broker tests: a running embedded broker on a free port, and sinks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from edge.broker.config import AclRule, BrokerConfig, ListenerConfig
from edge.broker.embedded import EmbeddedBroker
from edge.sources.base import FrameSink, Position
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame
from tests.support import CollectingSink, free_port

OPEN_ACL = [AclRule(username="*", publish=["#"], subscribe=["#"])]

BrokerFactory = Callable[..., AbstractAsyncContextManager[EmbeddedBroker]]


def broker_config(port: int, **overrides: Any) -> BrokerConfig:
    values: dict[str, Any] = {
        "listeners": [ListenerConfig(name="tcp", port=port)],
        "allow_anonymous": True,
        "acl": OPEN_ACL,
    }
    values.update(overrides)
    return BrokerConfig(**values)


@asynccontextmanager
async def running(broker: EmbeddedBroker) -> AsyncIterator[EmbeddedBroker]:
    task = asyncio.create_task(broker.run(), name="test-broker")
    try:
        async with asyncio.timeout(10):
            started = asyncio.create_task(broker.started.wait(), name="test-broker-started")
            done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                started.cancel()
                task.result()  # raises the start error
        yield broker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def sink() -> CollectingSink:
    return CollectingSink()


@pytest.fixture
def start_broker(port: int, sink: CollectingSink) -> BrokerFactory:
    """``async with start_broker(**config_overrides) as broker:`` on the test's free port."""

    def factory(*, sink_: FrameSink | None = None, **overrides: Any) -> AbstractAsyncContextManager[EmbeddedBroker]:
        config = broker_config(port, **overrides)
        return running(EmbeddedBroker(config, sink_ or sink, edge_id="edge-1"))

    return factory


@dataclass
class GateSink:
    """A FrameSink whose durable puts wait until the test opens their gate (a store that has not committed)."""

    frames: list[TelemetryFrame] = field(default_factory=list)
    rejected: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    pending: asyncio.Queue[asyncio.Event] = field(default_factory=asyncio.Queue)
    stored: asyncio.Event = field(default_factory=asyncio.Event)

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        if durable:
            gate = asyncio.Event()
            await self.pending.put(gate)
            await gate.wait()
        self.frames.extend(frames)
        self.stored.set()

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        self.rejected.append((origin, reason, payload))

    async def next_put(self, within: float = 10.0) -> asyncio.Event:
        """The gate of the next durable put that reached the sink."""
        async with asyncio.timeout(within):
            return await self.pending.get()
