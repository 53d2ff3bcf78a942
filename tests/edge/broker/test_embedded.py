"""The embedded broker as the edge uses it: store before ack, auth, ACL, bad input, republishing."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import aiomqtt
import msgpack
import pytest

from edge.broker.auth import set_password
from edge.broker.config import AclRule, BrokerConfig, ListenerConfig
from edge.broker.embedded import BrokerStartError, EmbeddedBroker
from shared.codec import encode_frame
from shared.frame import TelemetryFrame
from tests.edge.broker.conftest import BrokerFactory, GateSink, running
from tests.edge.broker.mqttraw import PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, RawClient
from tests.support import CollectingSink

TS = 1_780_000_000.0


def frame_bytes(device: str = "dev-1", ts: float = TS, **sensors: float) -> bytes:
    return encode_frame(TelemetryFrame(ts=ts, device_id=device, sensors=sensors or {"t": 20.5}))


async def test_puback_is_sent_only_after_the_durable_put_returned(start_broker: BrokerFactory, port: int) -> None:
    sink = GateSink()
    async with start_broker(sink_=sink):
        device, _, _ = await RawClient.connect(port, "dev-1")
        await device.publish("twin/dev-1/telemetry", frame_bytes(), qos=1, packet_id=7)
        gate = await sink.next_put()
        await device.ping()
        assert (await device.read()).kind == PINGRESP  # no PUBACK while the put is pending
        assert sink.frames == []
        gate.set()
        assert (await device.read_kind(PUBACK)).packet_id == 7
        assert [f.device_id for f in sink.frames] == ["dev-1"]
        await device.disconnect()


async def test_pubrec_of_qos2_waits_for_the_durable_put(start_broker: BrokerFactory, port: int) -> None:
    sink = GateSink()
    async with start_broker(sink_=sink):
        device, _, _ = await RawClient.connect(port, "dev-1")
        await device.publish("twin/dev-1/telemetry", frame_bytes(), qos=2, packet_id=3)
        gate = await sink.next_put()
        await device.ping()
        assert (await device.read()).kind == PINGRESP
        gate.set()
        assert (await device.read_kind(PUBREC)).packet_id == 3
        await device.ack(PUBREL, 3)
        assert (await device.read_kind(PUBCOMP)).packet_id == 3
        assert len(sink.frames) == 1
        await device.disconnect()


async def test_acks_keep_publish_order_when_the_second_put_finishes_first(
    start_broker: BrokerFactory, port: int
) -> None:
    sink = GateSink()
    async with start_broker(sink_=sink):
        device, _, _ = await RawClient.connect(port, "dev-1")
        await device.publish("twin/dev-1/telemetry", frame_bytes(ts=TS), qos=1, packet_id=1)
        first = await sink.next_put()
        await device.publish("twin/dev-1/telemetry", frame_bytes(ts=TS + 1), qos=1, packet_id=2)
        second = await sink.next_put()
        second.set()
        await device.ping()
        assert (await device.read()).kind == PINGRESP  # ack 2 must wait for ack 1
        first.set()
        assert [(await device.read_kind(PUBACK)).packet_id for _ in range(2)] == [1, 2]
        await device.disconnect()


async def test_message_lost_before_ack_is_resent_and_stored(start_broker: BrokerFactory, port: int) -> None:
    sink = GateSink()
    async with start_broker(sink_=sink):
        device, _, _ = await RawClient.connect(port, "dev-1", clean=False)
        await device.publish("twin/dev-1/telemetry", frame_bytes(), qos=1, packet_id=4)
        stuck = await sink.next_put()
        await device.abort()  # connection lost before the PUBACK
        device, _, _ = await RawClient.connect(port, "dev-1", clean=False)
        await device.publish("twin/dev-1/telemetry", frame_bytes(), qos=1, packet_id=4, dup=True)
        (await sink.next_put()).set()
        assert (await device.read_kind(PUBACK)).packet_id == 4
        stuck.set()
        await device.disconnect()
    assert {(f.device_id, f.ts) for f in sink.frames} == {("dev-1", TS)}  # the store dedups the twin


async def test_json_and_msgpack_single_and_batched_frames_reach_the_sink(
    start_broker: BrokerFactory, port: int, sink: CollectingSink
) -> None:
    batch = msgpack.packb([{"ts": TS + i, "sensors": {"rpm": i}} for i in range(50)])
    async with start_broker(), aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish("twin/dev-1/telemetry", frame_bytes(), qos=1)
        await client.publish("twin/dev-2/telemetry", json.dumps({"ts": TS, "sensors": {"t": 1}}), qos=0)
        await client.publish("twin/dev-3/telemetry", batch, qos=1)
        await sink.wait_for(52)
    assert sorted({f.device_id for f in sink.frames}) == ["dev-1", "dev-2", "dev-3"]
    assert sink.rejected == []


async def test_broker_keeps_serving_after_malformed_payloads(
    start_broker: BrokerFactory, port: int, sink: CollectingSink
) -> None:
    bad = [
        frame_bytes()[:-3],  # truncated MessagePack
        b'{"ts": NaN, "device_id": "dev-1"}',
        b'{"ts": 1780000000, "sensors": {"t": Infinity}}',
        msgpack.packb({"ts": "yesterday", "sensors": [1, 2]}),
        msgpack.packb({"ts": TS, "sensors": {f"s{i}": i for i in range(5000)}}),
        msgpack.packb({"ts": TS, "device_id": "dev-2"}),  # not this topic's device
        b"\x00" * 300_000,  # over max_payload
    ]
    async with start_broker(), aiomqtt.Client("127.0.0.1", port) as client:
        for payload in bad:
            await client.publish("twin/dev-1/telemetry", payload, qos=1)
        await client.publish("twin/d\u00e9v\u200b/telemetry", frame_bytes(), qos=1)
        await client.publish("twin/dev-1/telemetry", frame_bytes(), qos=1)
        await sink.wait_for(1)
        await sink.wait_for(len(bad) + 1, rejected=True)
    reasons = sorted(r.split(":")[0] for _, r, _ in sink.rejected)
    assert reasons == sorted(
        ["unreadable", "invalid_frame", "invalid_frame", "invalid_frame", "invalid_frame", "device_mismatch",
         "too_large", "bad_topic"]
    )


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    set_password(path, "dev-1", "correct horse")
    set_password(path, "dash", "battery staple")
    return path


async def test_password_and_acl_are_enforced(port: int, sink: CollectingSink, password_file: Path) -> None:
    config = BrokerConfig(
        listeners=[ListenerConfig(name="tcp", port=port)],
        password_file=password_file,
        acl=[
            AclRule(username="dev-1", publish=["twin/%u/telemetry"]),
            AclRule(username="dash", subscribe=["twinedge/#"]),
        ],
    )
    broker = EmbeddedBroker(config, sink, edge_id="edge-1")
    async with running(broker):
        for refused in ({"username": "dev-1", "password": "wrong"}, {}):
            client, rc, _ = await RawClient.connect(port, "x", **refused)
            await client.abort()
            assert rc == 5  # not authorised
        device, rc, _ = await RawClient.connect(port, "dev-1", username="dev-1", password="correct horse")
        assert rc == 0
        await device.publish("twin/dev-2/telemetry", frame_bytes("dev-2"), qos=1, packet_id=1)
        await device.read_kind(PUBACK)  # 3.1.1 cannot refuse a publish: acknowledged and dropped
        await device.publish("twin/dev-1/telemetry", frame_bytes(), qos=1, packet_id=2)
        await device.read_kind(PUBACK)
        assert [f.device_id for f in sink.frames] == ["dev-1"]
        dash, _, _ = await RawClient.connect(port, "dash", username="dash", password="battery staple")
        assert await dash.subscribe(1, ("twin/#", 0), ("twinedge/edge-1/frames/+", 0)) == [0x80, 0]
        snap = broker.snapshot()
        assert (snap["refused_connections"], snap["refused_publishes"]) == (2, 1)
        await device.disconnect()
        await dash.disconnect()


async def test_stored_frames_are_republished_per_device(start_broker: BrokerFactory, port: int) -> None:
    frames = [TelemetryFrame(ts=TS + i, device_id=f"dev-{i % 2}", sensors={"t": i}) for i in range(4)]
    async with start_broker() as broker:
        await broker.publish_stored(frames)  # nobody subscribed: nothing to do
        dash, _, _ = await RawClient.connect(port, "dash")
        await dash.subscribe(1, ("twinedge/edge-1/frames/+", 0))
        await broker.publish_stored(frames)
        got = {}
        for _ in range(2):
            packet = await dash.read_kind(PUBLISH)
            got[packet.topic] = [f["ts"] for f in msgpack.unpackb(packet.payload)]
        assert got == {
            "twinedge/edge-1/frames/dev-0": [TS, TS + 2],
            "twinedge/edge-1/frames/dev-1": [TS + 1, TS + 3],
        }
        await dash.disconnect()


async def test_snapshot_counts_clients_messages_and_rejections(
    start_broker: BrokerFactory, port: int, sink: CollectingSink
) -> None:
    async with start_broker() as broker:
        device, _, _ = await RawClient.connect(port, "dev-1")
        await device.publish("twin/dev-1/telemetry", frame_bytes(), qos=1, packet_id=1)
        await device.read_kind(PUBACK)
        await device.publish("twin/dev-1/telemetry", b"\xc1", qos=1, packet_id=2)
        await device.read_kind(PUBACK)
        snap = broker.snapshot()
        assert snap["clients_connected"] == 1
        assert (snap["messages_in"], snap["frames_in"], snap["rejected"]) == (2, 1, {"unreadable": 1})
        listener = snap["listeners"][0]
        assert {k: listener[k] for k in ("name", "host", "port", "tls", "connections", "refused")} == {
            "name": "tcp", "host": "127.0.0.1", "port": port, "tls": False, "connections": 1, "refused": 0
        }
        await device.disconnect()


async def test_a_port_in_use_is_a_clear_start_error(port: int, sink: CollectingSink) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        config = BrokerConfig(listeners=[ListenerConfig(name="tcp", port=port)], allow_anonymous=True)
        with pytest.raises(BrokerStartError, match=f"127.0.0.1:{port}"):
            async with running(EmbeddedBroker(config, sink, edge_id="edge-1")):
                pass


async def test_a_missing_password_file_is_a_clear_start_error(port: int, sink: CollectingSink, tmp_path: Path) -> None:
    config = BrokerConfig(listeners=[ListenerConfig(name="tcp", port=port)], password_file=tmp_path / "nope")
    with pytest.raises(BrokerStartError, match="not found"):
        async with running(EmbeddedBroker(config, sink, edge_id="edge-1")):
            pass


async def test_shutdown_is_bounded_with_clients_connected(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker():
        device, _, _ = await RawClient.connect(port, "dev-1")
        started = time.monotonic()
    assert time.monotonic() - started < 10
    await device.wait_closed_by_peer(within=5)
    await device.abort()


async def test_broker_can_start_again_after_shutdown(start_broker: BrokerFactory, port: int) -> None:
    for _ in range(2):
        async with start_broker():
            device, rc, _ = await RawClient.connect(port, "dev-1")
            assert rc == 0
            await device.disconnect()
    await asyncio.sleep(0)


async def test_a_deny_entry_also_holds_back_retained_messages(port: int, sink: CollectingSink) -> None:
    config = BrokerConfig(
        listeners=[ListenerConfig(name="tcp", port=port)],
        allow_anonymous=True,
        acl=[AclRule(username="anonymous", publish=["#"], subscribe=["#"], deny_subscribe=["plant/secret/#"])],
    )
    async with running(EmbeddedBroker(config, sink, edge_id="edge-1")):
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("plant/secret/recipe", b"s", qos=1, packet_id=1, retain=True)
        await pub.read_kind(PUBACK)
        dash, _, _ = await RawClient.connect(port, "dash")
        assert await dash.subscribe(1, ("#", 0)) == [0]
        await pub.publish("plant/open", b"o", qos=0)
        first = await dash.read_kind(PUBLISH)
        assert first.topic == "plant/open"  # the retained secret was not sent on subscribing to '#'
        await pub.disconnect()
        await dash.disconnect()


async def test_a_will_on_a_topic_the_client_may_not_publish_refuses_the_connection(
    port: int, sink: CollectingSink
) -> None:
    config = BrokerConfig(
        listeners=[ListenerConfig(name="tcp", port=port)],
        allow_anonymous=True,
        acl=[AclRule(username="anonymous", publish=["twin/%c/telemetry", "status/%c"])],
    )
    async with running(EmbeddedBroker(config, sink, edge_id="edge-1")) as broker:
        client, code, _ = await RawClient.connect(port, "plc-1", will=("twinedge/edge-1/frames/x", b"fake", 0, False))
        await client.abort()
        assert code == 5  # not authorised: amqtt would publish the will without asking the ACL
        client, code, _ = await RawClient.connect(port, "plc-1", will=("status/plc-1", b"offline", 0, False))
        assert code == 0
        await client.disconnect()
        assert broker.snapshot()["refused_connections"] == 1


async def test_refused_telemetry_is_acknowledged_but_not_forwarded(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker() as broker:
        dash, _, _ = await RawClient.connect(port, "dash")
        await dash.subscribe(1, ("twin/+/telemetry", 0))
        device, _, _ = await RawClient.connect(port, "dev-1")
        for packet_id, payload in enumerate([b"\xc1", b"[1, 2]", frame_bytes("dev-2")], start=1):
            await device.publish("twin/dev-1/telemetry", payload, qos=1, packet_id=packet_id)
            await device.read_kind(PUBACK)
        await device.publish("twin/dev-1/telemetry", frame_bytes(), qos=1, packet_id=9)
        await device.read_kind(PUBACK)
        assert (await dash.read_kind(PUBLISH)).payload == frame_bytes()
        assert sum(broker.snapshot()["rejected"].values()) == 4  # [1, 2] is two refused frames
        await device.disconnect()
        await dash.disconnect()
