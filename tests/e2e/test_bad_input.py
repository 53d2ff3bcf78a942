"""Malformed MQTT payloads against the real daemon: it keeps running and counts every rejection."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import msgpack

from tests.e2e.daemon import PASSWORD, USER, EdgeDaemon
from tests.edge.broker.mqttraw import PUBACK, RawClient

T0 = 1_800_000_000.0
GOOD = {"ts": T0, "device_id": "press-1", "sensors": {"temp": 70.5}}

MALFORMED: list[tuple[str, bytes, str]] = [
    ("truncated msgpack", msgpack.packb(GOOD)[:-4], "unreadable"),
    ("not a frame at all", msgpack.packb([42]), "invalid_frame"),
    ("sensors of the wrong type", json.dumps({**GOOD, "sensors": [1, 2]}).encode(), "invalid_frame"),
    ("NaN reading", b'{"ts": 1800000001, "device_id": "press-1", "sensors": {"temp": NaN}}', "invalid_frame"),
    ("infinite reading", msgpack.packb({**GOOD, "ts": T0 + 2, "sensors": {"t": float("inf")}}), "invalid_frame"),
    ("huge map", msgpack.packb({**GOOD, "sensors": {f"s{i}": i for i in range(5000)}}), "invalid_frame"),
    ("odd unicode id", json.dumps({**GOOD, "device_id": "pre\u200bss-1"}).encode(), "device_mismatch"),
    ("oversize message", b"\x00" * (300 * 1024), "too_large"),
    ("text", b"temperature is 70", "unreadable"),
]


async def test_the_daemon_survives_malformed_payloads_and_counts_them(tmp_path: Path) -> None:
    daemon = EdgeDaemon(tmp_path)
    await daemon.start()
    try:
        client, code, _ = await RawClient.connect(daemon.mqtt_port, "fuzzer", username=USER, password=PASSWORD)
        assert code == 0
        for packet_id, (_, payload, _) in enumerate(MALFORMED, start=1):
            await client.publish("twin/press-1/telemetry", payload, qos=1, packet_id=packet_id)
            if len(payload) <= 256 * 1024:
                await client.read_kind(PUBACK)  # refused input is acknowledged: a resend would not help
        await client.abort()

        # The broker still serves, and a good frame still goes through.
        client, code, _ = await RawClient.connect(daemon.mqtt_port, "press-1", username=USER, password=PASSWORD)
        await client.publish("twin/press-1/telemetry", msgpack.packb(GOOD), qos=1, packet_id=100)
        await client.read_kind(PUBACK)
        await client.abort()
        # Refused input is acknowledged at once; its quarantine row is written just after.
        async with asyncio.timeout(10):
            while (status := await daemon.status())["queue"]["quarantined"] < len(MALFORMED):
                await asyncio.sleep(0.05)

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "status", "--socket", str(daemon.socket), stdout=subprocess.PIPE
        )
        cli_out = (await proc.communicate())[0].decode()
    finally:
        assert await daemon.stop() == 0

    expected: dict[str, int] = {}
    for _, _, reason in MALFORMED:
        expected[reason] = expected.get(reason, 0) + 1
    assert {k: v for k, v in status["mqtt"]["rejected"].items() if v} == expected
    assert status["queue"]["depth"] == 1
    assert status["queue"]["quarantined"] == len(MALFORMED)
    # MQTT ingest reports like a source: connected, and only the one good frame counts as its data
    [mqtt] = [s for s in status["sources"] if s["kind"] == "mqtt_broker"]
    assert (mqtt["name"], mqtt["state"], mqtt["frames"]) == ("mqtt", "connected", 1)
    assert "mqtt    mqtt_broker  connected" in cli_out
    assert "invalid_frame 5" in cli_out and "too_large 1" in cli_out
