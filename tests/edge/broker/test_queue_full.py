"""A queue that refuses frames (full under drop_newest, or a full disk): MQTT QoS 1 devices are not acknowledged
and deliver the frame again later, through the embedded broker and from an external broker alike."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.broker.client import ExternalMqttIngest
from edge.broker.config import MqttClientConfig
from edge.sources.base import Position
from edge.store import QueueFull
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame
from tests.edge.broker.conftest import BrokerFactory
from tests.edge.broker.mosquitto import Mosquitto, mosquitto_available
from tests.edge.broker.mqttraw import PUBACK, RawClient
from tests.edge.broker.test_interop import mosquitto_pub

TS = 1_780_000_000.0

@dataclass
class RefusingSink:
    """A FrameSink (our seam) that refuses puts while ``full`` is set, as the store writer does then:
    a durable put raises QueueFull, a put that does not wait is dropped (and counted by the writer)."""

    full: bool = True
    frames: list[TelemetryFrame] = field(default_factory=list)
    refused: int = 0
    stored: asyncio.Event = field(default_factory=asyncio.Event)

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        if self.full:
            self.refused += 1
            if durable:
                raise QueueFull("the queue is full; policy drop_newest refuses new frames",
                                reason="disk_budget_newest")
            return
        self.frames.extend(frames)
        self.stored.set()

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        raise AssertionError(f"nothing here is malformed: {origin} {reason}")

def payload(i: int) -> bytes:
    return json.dumps({"ts": TS + i, "sensors": {"temp_c": 40.0 + i}}).encode()

async def test_the_embedded_broker_does_not_acknowledge_a_refused_publish_and_the_device_resends_it(
    start_broker: BrokerFactory, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RefusingSink()
    async with start_broker(sink_=sink):
        for attempt in range(5):  # a device retrying while the queue stays full
            client, code, _ = await RawClient.connect(port, "press-1", clean=False)
            assert code == 0
            await client.publish("twin/press-1/telemetry", payload(1), qos=1, packet_id=7, dup=attempt > 0)
            try:
                packet = await client.read(within=5)
                raise AssertionError(f"the broker answered a refused publish with packet type {packet.kind}")
            except asyncio.IncompleteReadError:
                pass  # closed without PUBACK: the device keeps the frame
            await client.abort()
        assert sink.refused == 5 and sink.frames == []
        refusals = [r for r in caplog.records if "could not store telemetry" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].levelname == "WARNING"  # not a line per message

        sink.full = False
        client, _, _ = await RawClient.connect(port, "press-1", clean=False)
        await client.publish("twin/press-1/telemetry", payload(1), qos=1, packet_id=7, dup=True)
        ack = await client.read_kind(PUBACK)
        assert ack.packet_id == 7
        await client.disconnect()
    assert [f.ts for f in sink.frames] == [TS + 1]

async def test_a_qos0_publish_the_queue_refuses_keeps_the_connection(start_broker: BrokerFactory, port: int) -> None:
    sink = RefusingSink()
    async with start_broker(sink_=sink):
        client, _, _ = await RawClient.connect(port, "sensor-0")
        await client.publish("twin/sensor-0/telemetry", payload(0), qos=0)
        await client.subscribe(1, ("nothing/here", 0))  # answered: the connection is still up
        async with asyncio.timeout(5):
            while sink.refused < 1:
                await asyncio.sleep(0.01)
        await client.disconnect()
    assert sink.frames == []

@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed (apt-get install mosquitto)")
async def test_the_external_broker_client_leaves_refused_messages_unacknowledged_and_gets_them_again(
    port: int, tmp_path: Path
) -> None:
    sink = RefusingSink()
    ingest = ExternalMqttIngest(MqttClientConfig(port=port, client_id="edge-test"), sink, edge_id="edge-1")
    async with Mosquitto(port, tmp_path):
        task = asyncio.create_task(ingest.run(), name="external-ingest")
        try:
            async with asyncio.timeout(10):
                await ingest.started.wait()
            body = json.dumps({"ts": TS + 3, "sensors": {"temp_c": 43.0}})
            rc, out = await mosquitto_pub("-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                          "-t", "twin/press-3/telemetry", "-m", body)
            assert rc == 0, out
            async with asyncio.timeout(10):
                while "queue is full" not in (ingest.health.reason or ""):  # told, and reconnecting
                    await asyncio.sleep(0.01)
            assert not task.done()  # refused frames do not stop the client
            sink.full = False  # the broker delivers the unacknowledged message again after the reconnect
            async with asyncio.timeout(30):
                await sink.stored.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [f.ts for f in sink.frames] == [TS + 3]
