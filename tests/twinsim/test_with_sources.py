"""The generated config against the edge's own sources: what they decode is what the machine model holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.config import load_gateway_config
from edge.sources.modbus import ModbusSourceConfig
from edge.sources.modbus.source import ModbusSource
from edge.sources.opcua import OpcUaSourceConfig
from edge.sources.opcua.source import OpcUaSource
from tests.support import CollectingSink, free_port
from tests.twinsim.simsupport import free_ports
from twinsim.cli import main
from twinsim.machine import Machine
from twinsim.modbus_server import ModbusSim
from twinsim.opcua_server import OPCUA_VARIABLES, OpcUaSim

# sensor name -> the model value it must carry (Modbus scaling: 0.1 for the int16/uint16 × 10 values)
MODBUS_EXPECTED = {
    "spindle_temp": (lambda r: r.spindle_temp_c, 1e-4),
    "motor_temp": (lambda r: r.motor_temp_c, 1e-4),
    "vibration_rms": (lambda r: r.vibration_rms_mm_s, 1e-5),
    "pressure": (lambda r: r.pressure_bar, 1e-5),
    "ambient_temp": (lambda r: r.ambient_temp_c, 0.051),
    "coolant_flow": (lambda r: r.coolant_flow_l_min, 0.051),
    "cycle_count": (lambda r: r.cycle_count, 0),
    "uptime": (lambda r: r.uptime_s, 0),
    "machine_number": (lambda r: r.machine, 0),
    "running": (lambda r: r.running, 0),
    "estop_ok": (lambda r: True, 0),
}


def config_file(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "edge.toml"
    assert main(["config", *args, "--poll-interval", "100ms", "--publishing-interval", "100ms", "-o", str(out)]) == 0
    return out


@contextlib.asynccontextmanager
async def source_task(source: ModbusSource | OpcUaSource) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(), name="test-source")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_modbus_source_decodes_the_model_values(tmp_path: Path) -> None:
    base = free_ports(2)
    cfg = load_gateway_config(config_file(tmp_path, "--machines", "2", "--modbus-port", str(base), "--no-opcua"))
    machines = [Machine(1, cycle_count=70_000), Machine(2)]
    for _ in range(100):
        for machine in machines:
            machine.step(0.1)
    sim = ModbusSim(machines, "127.0.0.1", base)
    sim.tick()
    await sim.start()
    sink = CollectingSink()
    sources = [s for s in cfg.sources if isinstance(s, ModbusSourceConfig)]
    try:
        async with source_task(ModbusSource(sources[0], sink)), source_task(ModbusSource(sources[1], sink)):
            await sink.wait_for(2, timeout=10)
    finally:
        await sim.stop()
    assert not sink.rejected
    by_device = {frame.device_id: frame for frame in sink.frames}
    for machine in machines:
        frame, reading = by_device[machine.name], machine.reading()
        assert len(frame.sensors) == len(sources[0].registers)
        for name, (expected, tolerance) in MODBUS_EXPECTED.items():
            assert frame.sensors[name] == pytest.approx(expected(reading), abs=tolerance), (machine.name, name)


async def test_opcua_source_decodes_the_model_values(tmp_path: Path) -> None:
    port = free_port()
    cfg = load_gateway_config(config_file(tmp_path, "--machines", "2", "--opcua-port", str(port), "--no-modbus"))
    (source_config,) = [s for s in cfg.sources if isinstance(s, OpcUaSourceConfig)]
    machines = [Machine(1), Machine(2)]
    for _ in range(50):
        for machine in machines:
            machine.step(0.1)
    sim = OpcUaSim(machines, "127.0.0.1", port)
    await sim.start()
    sink = CollectingSink()
    latest: dict[str, dict[str, object]] = {"machine-1-opcua": {}, "machine-2-opcua": {}}

    def complete() -> bool:
        for frame in sink.frames:
            latest[frame.device_id].update(frame.sensors)
        return all(len(sensors) == len(OPCUA_VARIABLES) for sensors in latest.values())

    try:
        async with source_task(OpcUaSource(source_config, sink)):
            async with asyncio.timeout(20):
                while not complete():
                    await sink.wait_for(len(sink.frames) + 1, timeout=20)
    finally:
        await sim.stop()
    assert not sink.rejected
    for machine in machines:
        reading, sensors = machine.reading(), latest[f"{machine.name}-opcua"]
        assert sensors["spindle_temp"] == reading.spindle_temp_c
        assert sensors["cycle_count"] == reading.cycle_count
        assert sensors["running"] is True
