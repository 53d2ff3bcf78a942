"""The external-broker mode against a real Mosquitto: ingest, reconnect, and ack only after storing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edge.broker.client import ExternalMqttIngest
from edge.broker.config import MqttClientConfig
from edge.sources.base import FrameSink
from tests.edge.broker.conftest import GateSink
from tests.edge.broker.mosquitto import Mosquitto, mosquitto_available
from tests.edge.broker.test_interop import mosquitto_pub
from tests.support import CollectingSink

pytestmark = pytest.mark.skipif(
    not mosquitto_available(), reason="mosquitto not installed (apt-get install mosquitto mosquitto-clients)"
)

TS = 1_780_000_000.0


@asynccontextmanager
async def ingesting(port: int, sink: FrameSink, **overrides: object) -> AsyncIterator[ExternalMqttIngest]:
    config = MqttClientConfig(port=port, client_id="edge-test", **overrides)  # type: ignore[arg-type]
    ingest = ExternalMqttIngest(config, sink, edge_id="edge-1")
    task = asyncio.create_task(ingest.run(), name="test-external-ingest")
    try:
        async with asyncio.timeout(10):
            await ingest.started.wait()
        yield ingest
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def publish(port: int, n: int, qos: int = 1, device: str = "press-3") -> None:
    body = json.dumps({"ts": TS + n, "sensors": {"temp_c": 40.0 + n}})
    rc, out = await mosquitto_pub("-h", "127.0.0.1", "-p", str(port), "-q", str(qos),
                                  "-t", f"twin/{device}/telemetry", "-m", body)
    assert rc == 0, out


async def test_frames_from_the_external_broker_reach_the_sink(port: int, tmp_path: Path) -> None:
    sink = CollectingSink()
    async with Mosquitto(port, tmp_path), ingesting(port, sink) as ingest:
        await publish(port, 0)
        await publish(port, 1, qos=0)
        rc, _ = await mosquitto_pub("-h", "127.0.0.1", "-p", str(port), "-t", "twin/press-3/telemetry", "-m", "{")
        await sink.wait_for(2)
        await sink.wait_for(1, rejected=True)
        snap = ingest.snapshot()
        assert snap["health"]["state"] == "connected"
        assert (snap["frames_in"], snap["rejected"]) == (2, {"unreadable": 1})
    assert sorted(f.ts for f in sink.frames) == [TS, TS + 1]


async def test_reconnects_after_the_broker_restarts(port: int, tmp_path: Path) -> None:
    sink = CollectingSink()
    broker = Mosquitto(port, tmp_path)
    await broker.start()
    try:
        async with ingesting(port, sink) as ingest:
            await publish(port, 0)
            await sink.wait_for(1)
            await broker.stop()
            async with asyncio.timeout(10):
                await ingest.disconnected.wait()
            await broker.start()
            async with asyncio.timeout(30):
                await ingest.started.wait()
            await publish(port, 1)
            await sink.wait_for(2)
            assert ingest.snapshot()["health"]["reconnects"] >= 1
    finally:
        await broker.stop()


async def test_a_message_not_yet_stored_is_redelivered_after_an_edge_restart(port: int, tmp_path: Path) -> None:
    sink = GateSink()
    async with Mosquitto(port, tmp_path):
        async with ingesting(port, sink):
            await publish(port, 7)
            await sink.next_put()  # arrived, not committed: the edge "crashes" now, without acking
        assert sink.frames == []
        async with ingesting(port, sink):  # same client id, persistent session
            (await sink.next_put()).set()
            async with asyncio.timeout(10):
                await sink.stored.wait()
    assert [f.ts for f in sink.frames] == [TS + 7]


async def test_stored_frames_are_republished_when_enabled(port: int, tmp_path: Path) -> None:
    sink = CollectingSink()
    async with Mosquitto(port, tmp_path), ingesting(port, sink, republish=True) as ingest:
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "twinedge/edge-1/frames/#", "-C", "1", "-v",
            stdout=asyncio.subprocess.PIPE,
        )
        await publish(port, 0)
        await sink.wait_for(1)
        async with asyncio.timeout(10):
            while proc.returncode is None:
                await ingest.publish_stored(sink.frames)
                try:
                    async with asyncio.timeout(0.2):
                        await proc.wait()
                except TimeoutError:
                    pass
        out = await proc.stdout.read() if proc.stdout else b""
        assert out.startswith(b"twinedge/edge-1/frames/press-3 ")
