"""Payload -> frames: every malformed shape is refused with a counted reason, and logged once per burst."""

from __future__ import annotations

import json
import logging

import msgpack
import pytest

from edge.broker.ingest import TelemetryIngest, device_of_topic
from tests.support import CollectingSink

TS = 1_780_000_000.0
TOPIC = "twin/press-3/telemetry"


@pytest.fixture
def ingest(sink: CollectingSink) -> TelemetryIngest:
    return TelemetryIngest(sink, max_payload=65536, max_frames=100)


@pytest.fixture
def sink() -> CollectingSink:
    return CollectingSink()


@pytest.mark.parametrize(
    ("topic", "device"),
    [
        ("twin/press-3/telemetry", "press-3"),
        ("twin//telemetry", None),
        ("twin/a/b/telemetry", None),
        ("twin/press-3/status", None),
        ("other/press-3/telemetry", None),
    ],
)
def test_device_of_topic(topic: str, device: str | None) -> None:
    assert device_of_topic(topic) == device


async def test_frame_without_device_id_takes_it_from_the_topic(ingest: TelemetryIngest, sink: CollectingSink) -> None:
    payload = msgpack.packb({"ts": TS, "sensors": {"t": 1.0}})
    received = await ingest.receive(TOPIC, payload, client_id="c", durable=True)
    assert received.stored == 1
    assert sink.frames[0].device_id == "press-3"


async def test_list_with_some_bad_frames_keeps_the_good_ones(ingest: TelemetryIngest, sink: CollectingSink) -> None:
    payload = json.dumps(
        [{"ts": TS, "sensors": {"t": 1}}, {"ts": TS + 1, "sensors": {"t": "x" * 1000}}, {"ts": TS + 2}]
    ).encode()
    assert (await ingest.receive(TOPIC, payload, client_id="c", durable=False)).stored == 2
    assert ingest.rejected == {"invalid_frame": 1}
    origin, reason, raw = sink.rejected[0]
    assert origin == f"mqtt:{TOPIC}"
    assert reason.startswith("invalid_frame: [1].sensors.t:")
    assert raw == payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (msgpack.packb({"ts": TS, "sensors": {"t": 1.5}})[:-2], "unreadable"),
        (b"", "unreadable"),
        (b"\xc1\x00", "unreadable"),
        (b'{"ts": 1780000000, "sensors": {"t": NaN}}', "invalid_frame"),
        (b'{"ts": 1780000000, "sensors": {"t": -Infinity}}', "invalid_frame"),
        (msgpack.packb({"ts": TS, "metrics": {"score": float("inf")}}), "invalid_frame"),
        (msgpack.packb({"ts": TS, "sensors": {"t": [1, 2]}}), "invalid_frame"),
        (msgpack.packb({"ts": True}), "invalid_frame"),
        (msgpack.packb({"ts": TS * 1000}), "invalid_frame"),  # milliseconds
        (msgpack.packb({"ts": TS, "sensors": {f"k{i}": i for i in range(600)}}), "invalid_frame"),
        (msgpack.packb({"ts": TS, "sensors": {"\u202eevil": 1}}), "invalid_frame"),
        (msgpack.packb({"ts": TS, "device_id": "press-4"}), "device_mismatch"),
        (msgpack.packb({"ts": TS, "device_id": 7}), "device_mismatch"),
        (msgpack.packb("just text"), "not_frames"),
        (msgpack.packb(42), "not_frames"),
        (msgpack.packb([{"ts": TS + i} for i in range(101)]), "too_many_frames"),
        (b"[" * 100_000, "too_large"),
        (b"[" * 4000, "unreadable"),  # nested too deeply
        (msgpack.packb({"ts": TS}) + b"\x00", "unreadable"),
        (msgpack.packb(msgpack.ExtType(5, b"xx")), "unreadable"),
    ],
)
async def test_malformed_payload_is_refused_with_its_reason(
    ingest: TelemetryIngest, sink: CollectingSink, payload: bytes, reason: str
) -> None:
    assert (await ingest.receive(TOPIC, payload, client_id="c", durable=True)).stored == 0
    assert sink.frames == []
    assert ingest.rejected == {reason: 1}
    assert sink.rejected[0][1].startswith(reason + ": ")


@pytest.mark.parametrize("device", ["d\u00e9vice", "dev\u200bice", "a" * 65, "-lead", "dev ice", "dev\x00"])
async def test_odd_device_ids_in_the_topic_are_refused(ingest: TelemetryIngest, device: str) -> None:
    topic = f"twin/{device}/telemetry"
    assert (await ingest.receive(topic, msgpack.packb({"ts": TS}), client_id="c", durable=True)).stored == 0
    assert ingest.rejected == {"bad_topic": 1}


async def test_a_burst_of_refusals_is_logged_once(
    ingest: TelemetryIngest, sink: CollectingSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.broker.ingest")
    for _ in range(50):
        await ingest.receive(TOPIC, b"\xc1", client_id="c", durable=True)
    await ingest.receive(TOPIC, msgpack.packb({"ts": TS, "device_id": "x"}), client_id="c", durable=True)
    assert ingest.rejected == {"unreadable": 50, "device_mismatch": 1}
    assert len(sink.rejected) == 51
    lines = [r for r in caplog.records if r.name == "edge.broker.ingest"]
    assert len(lines) == 1
    assert "client 'c' on twin/press-3/telemetry" in lines[0].getMessage()
    ingest.close()


async def test_counters_in_snapshot(ingest: TelemetryIngest) -> None:
    await ingest.receive(TOPIC, msgpack.packb([{"ts": TS}, {"ts": TS + 1}]), client_id="c", durable=False)
    await ingest.receive(TOPIC, b"{", client_id="c", durable=False)
    snap = ingest.snapshot()
    assert (snap["messages_in"], snap["frames_in"], snap["rejected"]) == (2, 2, {"unreadable": 1})
    ingest.close()
