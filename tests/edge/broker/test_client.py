"""The external-broker mode against a real Mosquitto: ingest, reconnect, TLS and passwords, flow control,
and ack only after storing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edge.broker.client import ExternalMqttIngest
from edge.broker.client_mqtt import MqttConnection
from edge.broker.config import MqttClientConfig
from edge.sources.base import FrameSink
from tests.edge.broker.certs import make_tls_files
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
    config = MqttClientConfig(port=port, client_id="edge-test", **overrides)
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


async def test_user_password_and_tls_are_used(port: int, tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    passwd = tmp_path / "mosquitto.passwd"
    proc = await asyncio.create_subprocess_exec("mosquitto_passwd", "-c", "-b", str(passwd), "edge", "s3cret")
    assert await proc.wait() == 0
    sink = CollectingSink()
    async with Mosquitto(port, tmp_path, password_file=passwd, tls=(cert, key)):
        async with ingesting(port, sink, tls=True, cafile=ca, username="edge", password="s3cret"):
            rc, out = await mosquitto_pub("-h", "127.0.0.1", "-p", str(port), "--cafile", str(ca), "-u", "edge",
                                          "-P", "s3cret", "-q", "1", "-t", "twin/press-3/telemetry", "-m",
                                          json.dumps({"ts": TS, "sensors": {"temp_c": 40.0}}))
            assert rc == 0, out
            await sink.wait_for(1)
        config = MqttClientConfig(port=port, tls=True, cafile=ca, username="edge", password="wrong")
        refused = ExternalMqttIngest(config, sink, edge_id="edge-1")
        task = asyncio.create_task(refused.run(), name="test-refused-ingest")
        try:
            async with asyncio.timeout(10):
                await refused.disconnected.wait()
            assert "not authorised" in refused.snapshot()["health"]["reason"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [f.device_id for f in sink.frames] == ["press-3"]


async def test_too_large_payloads_are_refused_acknowledged_and_reading_goes_on(port: int, tmp_path: Path) -> None:
    sink = CollectingSink()
    big, huge = tmp_path / "big.bin", tmp_path / "huge.bin"
    big.write_bytes(b"x" * 1000)  # over max_payload, buffered and refused by the ingest
    huge.write_bytes(b"x" * 200_000)  # over max_payload + topic: skipped by the connection unread
    async with Mosquitto(port, tmp_path), ingesting(port, sink, max_payload="512B") as ingest:
        for path in (big, huge):
            rc, out = await mosquitto_pub("-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                          "-t", "twin/press-3/telemetry", "-f", str(path))
            assert rc == 0, out
        await publish(port, 1)
        await sink.wait_for(1)
        await sink.wait_for(2, rejected=True)
        snap = ingest.snapshot()
        assert (snap["rejected"], snap["frames_in"], snap["bytes_in"] > 201_000) == ({"too_large": 2}, 1, True)
        assert snap["health"]["state"] == "connected"
    assert all(payload is None for _, _, payload in sink.rejected)


async def test_thousands_of_messages_pass_a_small_in_flight_window(port: int, tmp_path: Path) -> None:
    """Mosquitto's default window is 20 messages: acks after each commit must keep it moving."""
    sink = CollectingSink()
    lines = "\n".join(json.dumps({"ts": TS + n, "sensors": {"n": n}}) for n in range(3000)) + "\n"
    async with Mosquitto(port, tmp_path, max_inflight=20), ingesting(port, sink):
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "twin/press-3/telemetry", "-l",
            stdin=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            await proc.communicate(lines.encode())
        assert proc.returncode == 0
        await sink.wait_for(3000, timeout=30)
    assert sorted(f.sensors["n"] for f in sink.frames) == list(range(3000))


async def test_reading_pauses_while_the_inbox_is_full_and_nothing_is_lost(port: int, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    payloads = [f"{n:04d}".encode() + b"x" * 4000 for n in range(300)]
    async with Mosquitto(port, tmp_path):
        _, conn = await loop.create_connection(lambda: MqttConnection(max_packet=8192, inbox_max=10),
                                               "127.0.0.1", port)
        try:
            await conn.connect("pause-test", clean_session=True, keepalive=30, username=None, password=None)
            await conn.subscribe(["twin/+/telemetry"], 1)
            proc = await asyncio.create_subprocess_exec(
                "mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "twin/p/telemetry", "-l",
                stdin=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(20):
                await proc.communicate(b"\n".join(payloads) + b"\n")  # all 1.2 MB reach the broker meanwhile
                got: list[bytes] = []
                while len(got) < len(payloads):
                    batch = await conn.messages()
                    # paused at 10 messages: at most one more read (256 KiB, ~64 of these) arrives on top
                    assert len(batch) <= 10 + 70
                    got.extend(m.payload for m in batch)
                    conn.ack(m.packet_id for m in batch)
            assert got == payloads
        finally:
            conn.close()
