"""The embedded broker's guard against abusive connections, in-process with raw sockets.

Each case also guards an override in edge/broker/amqtt_glue.py: if an amqtt
upgrade stops routing connections through ``stream_connected`` or sessions
through ``_initialize_client_session``, these fail. The same defects are checked
against the real daemon in tests/e2e/test_hostile_network.py.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from pathlib import Path

import pytest

from edge.broker.config import ListenerConfig
from tests.edge.broker.certs import make_tls_files
from tests.edge.broker.conftest import BrokerFactory
from tests.edge.broker.mqttraw import (
    CONNACK,
    CONNECT,
    PINGREQ,
    PUBACK,
    PUBLISH,
    SUBSCRIBE,
    RawClient,
    close_all,
    connect_packet,
    open_silent,
    packet,
    publish_packet,
)


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


# What a client sends after a successful CONNECT, and the reason the broker gives for closing.
AFTER_CONNECT = [
    ("reserved type 0", bytes([0x00, 0x00]), "packet type 0 is not sent by clients"),
    ("reserved type 15", bytes([0xF0, 0x00]), "packet type 15 is not sent by clients"),
    ("server-only CONNACK", packet(CONNACK, 0, b"\x00\x00"), "packet type 2 is not sent by clients"),
    ("second CONNECT", connect_packet("again"), "a second CONNECT on one connection"),
    ("PUBLISH with QoS 3", bytes([0x36, 0x05]) + _str("a") + b"\x00", "PUBLISH with QoS 3"),
    ("DUP at QoS 0", packet(PUBLISH, 0x08, _str("a/b") + b"x"), "PUBLISH at QoS 0 with DUP set"),
    ("SUBSCRIBE flags 0000", packet(SUBSCRIBE, 0, b"\x00\x01" + _str("a") + b"\x00"), "SUBSCRIBE with header flags"),
    ("PINGREQ with a body", packet(PINGREQ, 0, b"\x00"), "a PINGREQ of 1 bytes cannot be well formed"),
    ("length over 4 bytes", bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), "malformed remaining length"),
    ("wildcard topic", publish_packet("a/+/b", b"x"), "a topic with wildcards"),
    ("empty topic", publish_packet("", b"x"), "PUBLISH with an empty topic"),
    ("$ topic", publish_packet("$SYS/broker/x", b"x", qos=1), "topics starting with '$' are the broker's"),
    ("topic not UTF-8", packet(PUBLISH, 0, b"\x00\x02\xff\xfe" + b"x"), "a PUBLISH topic that is not UTF-8"),
    ("topic longer than packet", packet(PUBLISH, 0, b"\x00\x09abc"), "whose topic is longer than the packet"),
]


@pytest.mark.parametrize(("bad", "reason"), [pytest.param(b, r, id=i) for i, b, r in AFTER_CONNECT])
async def test_a_protocol_error_after_connect_closes_the_connection_and_is_counted(
    start_broker: BrokerFactory, port: int, bad: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_broker() as broker:
        client, code, _ = await RawClient.connect(port, "rogue")
        assert code == 0
        await client.send(bad)
        await client.wait_closed_by_peer(within=5)
        await client.abort()
        assert broker.snapshot()["protocol_errors"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge.broker.guard"]
    assert len(warnings) == 1 and reason in warnings[0] and "client 'rogue' from 127.0.0.1:" in warnings[0]


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        pytest.param(packet(PINGREQ, 0, b""), "the first packet is PINGREQ, not CONNECT", id="not CONNECT"),
        pytest.param(packet(CONNECT, 0, b"\x00\x04MQTT\x04"), "a CONNECT of 7 bytes cannot be", id="short"),
        pytest.param(packet(CONNECT, 0, _str("MQIsdp") + b"\x03\x02\x00\x3c" + _str("old")), "invalid CONNECT",
                     id="MQTT 3.1"),
        pytest.param(packet(CONNECT, 0, _str("MQTT") + b"\x04\x03\x00\x3c" + _str("c")), "invalid CONNECT",
                     id="reserved flag"),
    ],
)
async def test_a_bad_first_packet_closes_the_connection_and_is_counted(
    start_broker: BrokerFactory, port: int, first: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_broker() as broker:
        client = await RawClient.open(port)
        await client.send(first)
        await client.wait_closed_by_peer(within=5)
        await client.abort()
        assert broker.snapshot()["protocol_errors"] == 1
    assert any(reason in r.getMessage() for r in caplog.records if r.name == "edge.broker.guard")


async def test_silent_and_half_sent_connections_are_closed_after_the_connect_timeout(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker(connect_timeout="500ms") as broker:
        silent = await RawClient.open(port)
        partial = await RawClient.open(port)
        await partial.send(connect_packet("slow")[:7])
        for client in (silent, partial):
            await client.wait_closed_by_peer(within=5)
            await client.abort()
        snap = broker.snapshot()
        assert (snap["connect_timeouts"], snap["listeners"][0]["connections"]) == (2, 0)


async def test_a_packet_left_half_sent_is_closed_after_one_and_a_half_keepalives(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker() as broker:
        client, _, _ = await RawClient.connect(port, "dribbler", keepalive=1)
        await client.send(publish_packet("a/b", b"x" * 50, qos=1)[:10])
        await client.wait_closed_by_peer(within=6)
        await client.abort()
        assert broker.snapshot()["stalled_packets"] == 1


async def test_a_socket_closed_by_the_client_before_connect_frees_its_slot_at_once(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker(connect_timeout="30s") as broker:
        for sent in (b"", b"\x10", connect_packet("x")[:6]):
            client = await RawClient.open(port)
            if sent:
                await client.send(sent)
            await client.abort()
        async with asyncio.timeout(5):  # well before the 30 s connect timeout
            while broker.snapshot()["listeners"][0]["connections"]:
                await asyncio.sleep(0.01)


async def test_an_oversized_packet_is_refused_from_its_fixed_header(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker(max_packet_size="64kB", max_payload="1kB") as broker:
        client, _, _ = await RawClient.connect(port, "big")
        await client.send(bytes([0x32, 0x80, 0x80, 0x80, 0x40]) + _str("a/b"))  # announces 128 MiB
        await client.wait_closed_by_peer(within=5)
        await client.abort()
        ok, _, _ = await RawClient.connect(port, "fits")
        await ok.publish("a/b", b"x" * 60_000, qos=1, packet_id=1)
        await ok.read_kind(PUBACK)  # up to max_packet_size is fine
        await ok.disconnect()
        assert broker.snapshot()["oversized_packets"] == 1


async def test_a_full_listener_closes_new_connections_at_once_and_silent_ones_give_way(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker(listeners=[ListenerConfig(name="tcp", port=port, max_connections=2)]) as broker:
        first, _, _ = await RawClient.connect(port, "first")
        silent = await RawClient.open(port)
        second, code, _ = await RawClient.connect(port, "second")  # the silent one gives way
        assert code == 0
        await silent.wait_closed_by_peer(within=5)
        extra = await RawClient.open(port)
        await extra.wait_closed_by_peer(within=5)  # amqtt's own limit would hold it open, waiting
        snap = broker.snapshot()
        assert (snap["refused_at_limit"], snap["closed_for_newer"]) == (1, 1)
        assert snap["listeners"][0] | {"port": 0} == {
            "name": "tcp", "host": "127.0.0.1", "port": 0, "tls": False, "connections": 2, "limit": 2, "refused": 1
        }
        for client in (first, second, silent, extra):
            await client.abort()


async def test_tls_handshakes_run_within_the_connect_timeout(
    start_broker: BrokerFactory, port: int, tmp_path: Path
) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    listeners = [ListenerConfig(name="tls", port=port, tls=True, certfile=cert, keyfile=key)]
    async with start_broker(listeners=listeners, connect_timeout="500ms") as broker:
        silent = await RawClient.open(port)  # no ClientHello
        await silent.wait_closed_by_peer(within=5)
        plain = await RawClient.open(port)
        await plain.send(connect_packet("no-tls"))  # MQTT without TLS
        await plain.wait_closed_by_peer(within=5)
        context = ssl.create_default_context(cafile=str(ca))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        client = RawClient(reader, writer)
        await client.send(connect_packet("tls-ok"))
        assert (await client.read_kind(CONNACK)).body == b"\x00\x00"
        await client.disconnect()
        snap = broker.snapshot()
        assert (snap["connect_timeouts"], snap["protocol_errors"]) == (1, 1)
        for raw in (silent, plain):
            await raw.abort()


async def test_a_burst_of_connections_waits_in_the_kernel_queue_while_the_broker_is_busy(
    start_broker: BrokerFactory, port: int
) -> None:
    """With asyncio's listen backlog of 100, a device connecting behind a burst loses its SYN and waits a
    second for the retransmission; the broker's queue holds the burst instead."""
    async with start_broker(connect_timeout="30s"):
        # The event loop is blocked meanwhile: nothing is accepted, the kernel queues.
        connected = open_silent(port, 300, timeout=3)
        close_all(connected)
        assert len(connected) == 300
        device, code, _ = await RawClient.connect(port, "behind-the-burst")  # accepted after all of them
        assert code == 0
        await device.disconnect()
