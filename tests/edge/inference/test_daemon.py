"""A real `twinedge run` serving a local model package: MQTT frames are stored with their score, alerts are
published on twin/<device>/alerts, and `twinedge model status` / `twinedge status` show the model."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge.control.client import request
from tests.e2e.daemon import PASSWORD, USER, EdgeDaemon
from tests.edge.inference.packages import T0, make_schema, reshape_graph, write_package


def local_model(path: Path, device: str = "press-1") -> str:
    return f'[inference]\n[[inference.local]]\ndevice = "{device}"\npackage = "{path}"\nversion = 3\n'


async def stored(daemon: EdgeDaemon, count: int) -> list[dict[str, Any]]:
    """The frames in the queue once there are ``count`` of them."""
    async with asyncio.timeout(20):
        while True:
            rows = await request(daemon.socket, "queue_peek", limit=1000)
            if len(rows) >= count:
                return [r["frame"] for r in rows]
            await asyncio.sleep(0.05)


async def cli(daemon: EdgeDaemon, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", *args, "--socket", str(daemon.socket),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def telemetry(i: int, temp: float, vib: float | None = None) -> bytes:
    sensors = {"temp": temp} if vib is None else {"temp": temp, "vib": vib}
    return json.dumps({"ts": T0 + i, "device_id": "press-1", "sensors": sensors}).encode()


@pytest.mark.slow
async def test_mqtt_frames_are_stored_scored_and_alerts_published(tmp_path: Path) -> None:
    package = write_package(tmp_path, schema=make_schema(("temp", "vib"), threshold=5.0))
    daemon = EdgeDaemon(tmp_path / "edge", local_model(package))
    await daemon.start()
    try:
        async with aiomqtt.Client("127.0.0.1", daemon.mqtt_port, username=USER, password=PASSWORD) as client:
            await client.subscribe("twin/press-1/alerts", qos=1)
            for i, (temp, vib) in enumerate([(1.0, 1.0), (3.0, None), (4.0, 3.0), (0.0, 0.0)]):
                await client.publish("twin/press-1/telemetry", telemetry(i, temp, vib), qos=1)
            alerts = []
            async with asyncio.timeout(20):
                async for message in client.messages:
                    alerts.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
                    if len(alerts) == 2:
                        break
        frames = await stored(daemon, 4)
        # vib left out of the second frame: its last value (1.0) is carried forward
        assert [f["metrics"]["model.score"] for f in frames] == pytest.approx([1.0, 5.0, 12.5, 0.0])
        assert [(a["event"], a["ts"], a["score"]) for a in alerts] == [("raised", T0 + 1, 5.0),
                                                                        ("cleared", T0 + 3, 12.5)]
        assert alerts[0]["model"] == "press-anomaly" and alerts[0]["version"] == 3
        assert alerts[0]["alert_id"] == alerts[1]["alert_id"]

        code, out, _ = await cli(daemon, "model", "status")
        assert code == 0
        assert "press-1" in out and "press-anomaly" in out and "v3" in out and "serving" in out
        code, out, _ = await cli(daemon, "status")
        assert code == 0 and "press-1: press-anomaly v3 serving; last score 0" in out
        code, out, err = await cli(daemon, "model", "rollback", "press-1")
        assert code == 1 and out == ""
        assert err.strip() == "twinedge: device 'press-1' has no previous model to roll back to"
    finally:
        assert await daemon.stop() == 0


@pytest.mark.slow
async def test_a_bad_local_package_is_reported_and_frames_flow_unscored(tmp_path: Path) -> None:
    package = write_package(tmp_path, schema=make_schema(("temp", "vib")))
    package.write_bytes(package.read_bytes()[:-40])  # truncated
    daemon = EdgeDaemon(tmp_path / "edge", local_model(package))
    await daemon.start()
    try:
        async with aiomqtt.Client("127.0.0.1", daemon.mqtt_port, username=USER, password=PASSWORD) as client:
            await client.publish("twin/press-1/telemetry", telemetry(0, 1.0, 1.0), qos=1)
        frames = await stored(daemon, 1)
        assert frames[0]["sensors"] == {"temp": 1.0, "vib": 1.0} and "metrics" not in frames[0]
        status = await request(daemon.socket, "model_status")
        assert len(status["rejected"]) == 1 and "not a readable ZIP" in status["rejected"][0]["reason"]
        code, out, _ = await cli(daemon, "model", "status")
        assert code == 0 and "rejected:" in out and "not a readable ZIP" in out
    finally:
        assert await daemon.stop() == 0


@pytest.mark.slow
async def test_a_model_that_throws_at_run_time_is_taken_out_and_frames_are_still_stored(tmp_path: Path) -> None:
    package = write_package(tmp_path, schema=make_schema(("temp", "vib")), model=reshape_graph(2),
                            test_rows=[[1.0, 2.0]])
    daemon = EdgeDaemon(tmp_path / "edge", local_model(package))
    await daemon.start()
    try:
        async with aiomqtt.Client("127.0.0.1", daemon.mqtt_port, username=USER, password=PASSWORD) as client:
            for n in range(3):  # a list of frames in one message: one batch of rows, which this model cannot take
                batch = [{"ts": T0 + 10 * n + k, "device_id": "press-1", "sensors": {"temp": 1.0, "vib": 2.0}}
                         for k in range(5)]
                await client.publish("twin/press-1/telemetry", json.dumps(batch).encode(), qos=1)
        frames = await stored(daemon, 15)
        assert all("metrics" not in f for f in frames)
        status = await request(daemon.socket, "model_status")
        device = status["devices"][0]
        assert device["state"] == "failed" and "failed 3 runs in a row" in device["message"]
    finally:
        assert await daemon.stop() == 0
