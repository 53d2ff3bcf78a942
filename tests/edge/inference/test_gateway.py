"""The gateway in-process with a real pymodbus server: a window model over registers with a deadband, and a
rollback through the control socket and the CLI."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.app import Gateway
from edge.config import GatewayConfig
from edge.control.client import request
from tests.edge.inference.packages import assign, make_schema, write_package
from tests.edge.sources.test_modbus_support import ModbusTestServer, device, tcp_source, write_registers
from tests.edge.test_app import running

# temp (no deadband) and vib (deadband: left out of frames while it holds still); 20 and 5 in the registers
REGISTERS = [{"name": "temp", "address": 0, "unit": "degC"},
             {"name": "vib", "address": 1, "deadband": 1.0, "unit": "mm/s"}]
WINDOW = make_schema((("temp", "degC"), ("vib", "mm/s")), mode="window", features=["mean", "peak"],
                     window={"length": 4, "step": 2, "interval_s": 0.05, "interval_tolerance": 0.9},
                     threshold=1000.0, scale=10.0)
# features scaled by 10: (2^2 + 2^2 + 0.5^2 + 0.5^2) / 4
EXPECTED = (4 + 4 + 0.25 + 0.25) / 4


def config(tmp_path: Path, port: int, package: Path | None = None) -> GatewayConfig:
    inference: dict[str, Any] = {}
    if package is not None:
        inference["local"] = [{"device": "press-1", "package": str(package)}]
    return GatewayConfig.model_validate({
        "edge": {"id": "edge-1", "state_dir": str(tmp_path / "state")},
        "store": {"batch_max_delay": "5ms"},
        "sources": [tcp_source("press-1", port, REGISTERS, poll_interval="50ms")],
        "inference": inference,
    })


async def scored(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        while True:
            frames = [r.frame_dict() for r in await gateway.store.read(limit=10_000)]
            done = [f for f in frames if "model.score" in f.get("metrics", {})]
            if len(done) >= count:
                return frames
            await asyncio.sleep(0.05)


async def test_a_window_model_scores_modbus_frames_with_a_deadband(tmp_path: Path) -> None:
    package = write_package(tmp_path, "press-window", WINDOW)
    async with ModbusTestServer(lambda: [device(1, holding={0: [20, 5]})]) as server:
        gateway = Gateway(config(tmp_path, server.port, package))
        async with running(gateway):
            frames = await scored(gateway, 3)
    assert any("vib" not in f["sensors"] for f in frames)  # the deadband left vib out...
    done = [f["metrics"]["model.score"] for f in frames if f.get("metrics")]
    assert done == pytest.approx([EXPECTED] * len(done))  # ...and its last value filled in
    status = gateway.engine.status()["devices"][0]
    assert (status["model"], status["state"], status["last_score"]) == ("press-window", "serving",
                                                                         pytest.approx(EXPECTED))


async def test_a_model_for_other_units_is_refused_by_the_register_map(tmp_path: Path) -> None:
    schema = make_schema((("temp", "degF"), ("vib", "mm/s")))
    package = write_package(tmp_path, "fahrenheit", schema)
    async with ModbusTestServer(lambda: [device(1, holding={0: [20, 5]})]) as server:
        gateway = Gateway(config(tmp_path, server.port, package))
        async with running(gateway):
            async with asyncio.timeout(10):
                while not gateway.engine.status()["devices"]:
                    await asyncio.sleep(0.02)
            status = await request(gateway.config.control_socket, "model_status")
    message = status["devices"][0]["message"]
    assert status["devices"][0]["state"] == "rejected"
    assert "sensors.temp: the device reads it in 'degC', the model was trained on 'degF'" in message


async def test_rollback_through_the_control_socket_and_the_cli(tmp_path: Path) -> None:
    v1 = assign(write_package(tmp_path, schema=make_schema(("temp", "vib"), scale=10.0)), 1)
    v2 = assign(write_package(tmp_path, schema=make_schema(("temp", "vib"), scale=20.0)), 2)
    async with ModbusTestServer(lambda: [device(1, holding={0: [20, 5]})]) as server:
        gateway = Gateway(config(tmp_path, server.port))
        async with running(gateway):
            await gateway.engine.set_assignments([v1])
            await _score_becomes(gateway, (4 + 0.25) / 2)
            await gateway.engine.set_assignments([v2])
            await _score_becomes(gateway, (1 + 0.0625) / 2)
            sock = gateway.config.control_socket
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge.cli", "model", "rollback", "press-1", "--socket", str(sock),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 0, err
            assert out.decode().strip() == ("press-1: now scored by press-anomaly v1 again (pinned until its "
                                            "assignment changes); v2 can be rolled back to")
            await _score_becomes(gateway, (4 + 0.25) / 2)
            await write_registers(server.port, 0, [40, 5])
            await _score_becomes(gateway, (16 + 0.25) / 2)
            status = await request(sock, "model_status")
            assert status["devices"][0]["pinned"] is True and status["devices"][0]["version"] == 1
            reply = await request(sock, "status")
            assert reply["models"]["press-1"]["version"] == 1


async def _score_becomes(gateway: Gateway, value: float) -> None:
    try:
        async with asyncio.timeout(10):
            while True:
                status = gateway.engine.status()["devices"]
                if status and status[0]["last_score"] == pytest.approx(value):
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"the score never became {value}: {gateway.engine.status()}") from None
