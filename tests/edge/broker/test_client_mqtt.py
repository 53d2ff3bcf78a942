"""The lean MQTT 3.1.1 subscriber: packet splitting, malformed input from a broker, keepalive."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.broker.client import ExternalMqttIngest
from edge.broker.client_mqtt import PUBLISH, MqttProtocolError, PacketReader, encode_packet, parse_publish
from edge.broker.config import MqttClientConfig
from tests.support import CollectingSink


def publish_packet(topic: str, payload: bytes, *, qos: int = 1, packet_id: int = 7) -> bytes:
    topic_bytes = topic.encode()
    body = struct.pack("!H", len(topic_bytes)) + topic_bytes + (struct.pack("!H", packet_id) if qos else b"") + payload
    return encode_packet(PUBLISH, qos << 1, body)


STREAM = (
    b"\x20\x02\x00\x00"  # CONNACK
    + publish_packet("twin/a/telemetry", b"x" * 300, packet_id=1)  # two-byte remaining length
    + publish_packet("twin/b/telemetry", b"", qos=0)
    + b"\xd0\x00"  # PINGRESP
    + publish_packet("twin/c/telemetry", b"\x81\xa2ts\x01", packet_id=65535)
)


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


@given(st.lists(st.integers(min_value=0), max_size=20))
def test_packets_are_the_same_however_the_stream_is_cut(cuts: list[int]) -> None:
    reader = PacketReader(max_packet=1000)
    packets = [p for chunk in split(STREAM, cuts) for p in reader.feed(chunk)]
    assert [kind for kind, *_ in packets] == [2, 3, 3, 13, 3]
    published = [parse_publish(flags, body, size) for kind, flags, body, size in packets if kind == PUBLISH]
    assert [(p.topic, p.qos, p.packet_id, len(p.payload)) for p in published] == [
        ("twin/a/telemetry", 1, 1, 300), ("twin/b/telemetry", 0, 0, 0), ("twin/c/telemetry", 1, 65535, 5),
    ]


@given(st.lists(st.integers(min_value=0), max_size=20))
def test_an_oversized_publish_is_skipped_but_can_still_be_acknowledged(cuts: list[int]) -> None:
    stream = publish_packet("twin/big/telemetry", b"y" * 5000, packet_id=9) + b"\xd0\x00"
    reader = PacketReader(max_packet=100)
    packets = [p for chunk in split(stream, cuts) for p in reader.feed(chunk)]
    assert [kind for kind, *_ in packets] == [PUBLISH, 13]
    kind, flags, body, size = packets[0]
    big = parse_publish(flags, body, size)
    assert (big.topic, big.packet_id, big.payload, big.size) == ("twin/big/telemetry", 9, b"", 5000)


@given(st.binary(max_size=300))
def test_random_bytes_from_a_broker_give_packets_or_a_protocol_error(data: bytes) -> None:
    reader = PacketReader(max_packet=64)
    try:
        for _, flags, body, size in reader.feed(data):
            if _ == PUBLISH:
                parse_publish(flags, body, size)
    except MqttProtocolError:
        pass


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "remaining length longer than 4 bytes"),
        (b"\x90" + b"\xe8\x07" + b"\x00" * 1000, "packet type 9 of 1000 bytes"),
    ],
)
def test_malformed_framing_is_a_protocol_error(data: bytes, problem: str) -> None:
    with pytest.raises(MqttProtocolError, match=problem):
        PacketReader(max_packet=100).feed(data)


@pytest.mark.parametrize(
    ("flags", "body", "problem"),
    [
        (4, b"\x00\x01t\x00\x01", "QoS 2"),
        (2, b"\x00\x01t\x00\x00", "packet id 0"),
        (2, b"\x00\x09tt", "shorter than its topic"),
        (0, b"\x00", "without a topic"),
    ],
)
def test_malformed_publish_is_a_protocol_error(flags: int, body: bytes, problem: str) -> None:
    with pytest.raises(MqttProtocolError, match=problem):
        parse_publish(flags, body, len(body))


def test_a_topic_that_is_not_utf8_is_kept_readable() -> None:
    message = parse_publish(0, b"\x00\x03\xff/a", 5)
    assert message.topic == "\ufffd/a"  # then refused as bad_topic by the ingest, not a crash


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_broker(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that plays a (misbehaving) broker."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(2)
    return head + await reader.readexactly(head[1])  # small packets only (CONNECT, SUBSCRIBE)


async def test_a_broker_sending_garbage_is_disconnected_and_retried() -> None:
    connections = 0

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_packet(reader)
        writer.write(b"\x20\x02\x00\x00" + b"\x70\xff\xff\xff\xff\x7f")  # CONNACK, then an impossible length
        await writer.drain()
        await reader.read()
        writer.close()

    async with fake_broker(garbage) as port:
        ingest = ExternalMqttIngest(MqttClientConfig(port=port), CollectingSink(), edge_id="edge-1")
        task = asyncio.create_task(ingest.run(), name="test-garbage-ingest")
        try:
            async with asyncio.timeout(10):
                await ingest.disconnected.wait()
            health = ingest.snapshot()["health"]
            assert health["state"] == "disconnected"
            assert "remaining length longer than 4 bytes" in health["reason"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert connections >= 1


async def test_a_refused_connect_names_the_reason() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_packet(reader)
        writer.write(b"\x20\x02\x00\x05")
        await writer.drain()
        writer.close()

    async with fake_broker(refuse) as port:
        ingest = ExternalMqttIngest(MqttClientConfig(port=port), CollectingSink(), edge_id="edge-1")
        task = asyncio.create_task(ingest.run(), name="test-refused-ingest")
        try:
            async with asyncio.timeout(10):
                await ingest.disconnected.wait()
            assert "not authorised" in ingest.snapshot()["health"]["reason"]
            assert not ingest.started.is_set()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_broker_that_goes_silent_is_given_up_after_the_keepalive() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_packet(reader)
        writer.write(b"\x20\x02\x00\x00")
        subscribe = await read_packet(reader)
        writer.write(b"\x90\x03" + subscribe[2:4] + b"\x01")  # SUBACK, then never another byte
        await writer.drain()
        await reader.read()  # PINGREQs are read and ignored
        writer.close()

    async with fake_broker(silent) as port:
        config = MqttClientConfig(port=port, keepalive="5s")
        ingest = ExternalMqttIngest(config, CollectingSink(), edge_id="edge-1")
        task = asyncio.create_task(ingest.run(), name="test-silent-ingest")
        try:
            async with asyncio.timeout(10):
                await ingest.started.wait()
            async with asyncio.timeout(15):
                await ingest.disconnected.wait()
            assert "no answer from the broker" in ingest.snapshot()["health"]["reason"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
