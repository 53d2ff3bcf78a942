"""Modbus source against a real pymodbus TCP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from typing import Any

import pytest

from edge.sources import SOURCES, SourceState
from edge.sources.base import Position
from edge.sources.modbus import ModbusSourceConfig
from edge.sources.modbus.source import ModbusSource
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame
from tests.edge.sources.test_modbus_support import (
    ModbusTestServer,
    Running,
    device,
    make,
    tcp_source,
    wait_state,
    wait_until,
    write_registers,
)
from tests.support import CollectingSink


def f32(value: float) -> list[int]:
    return list(struct.unpack(">2H", struct.pack(">f", value)))


def with_sensor(frames: Sequence[TelemetryFrame], name: str) -> list[Any]:
    return [f.sensors[name] for f in frames if name in f.sensors]


def test_the_source_is_registered_for_its_kind():
    assert SOURCES["modbus"].config is ModbusSourceConfig
    assert SOURCES["modbus"].load() is ModbusSource


PLANT_MAP = [
    {"name": "temperature", "address": 0, "type": "float32", "unit": "degC"},
    {"name": "pressure", "address": 2, "type": "int16", "scale": 0.1},
    {"name": "count", "address": 3, "type": "uint32", "order": "CDAB"},
    {"name": "label", "address": 5, "type": "string", "length": 4},
    {"name": "running", "address": 7, "type": "bool", "bit": 0},
    {"name": "level", "table": "input", "address": 0, "type": "uint16"},
    {"name": "pump", "table": "coil", "address": 2},
    {"name": "door", "table": "discrete_input", "address": 1},
]


def plant(unit: int = 1) -> Any:
    holding = f32(21.5) + [0xFFF6] + [0x0002, 0x0001] + [0x4F4B, 0x3100] + [0x0001]
    return device(unit, holding={0: holding}, input={0: [640]}, coils={0: [False, False, True] + [False] * 13},
                  discrete={0: [False, True] + [False] * 14})


async def test_one_frame_per_cycle_with_every_type_decoded_and_one_read_per_block():
    async with ModbusTestServer(lambda: [plant()]) as server:
        sink = CollectingSink()
        async with Running(make(tcp_source("press-3", server.port, PLANT_MAP, device_id="press-3.plc"), sink)) as src:
            await sink.wait_for(3)
            await wait_state(src, SourceState.CONNECTED)
    frame = sink.frames[0]
    assert frame.device_id == "press-3.plc"
    assert frame.sensors == {
        "temperature": 21.5, "pressure": pytest.approx(-1.0), "count": 0x00010002, "label": "OK1",
        "running": True, "level": 640, "pump": True, "door": True,
    }
    detail = src.health.snapshot()["detail"]
    assert detail["blocks"] == 4 and detail["requests_per_cycle"] == 4  # holding, input, coil, discrete input
    assert src.health.frames >= 3 and src.health.values >= 24
    assert len({f.ts for f in sink.frames}) == len(sink.frames)


async def test_an_illegal_address_degrades_only_that_read_and_the_rest_keeps_flowing():
    registers = [{"name": "good", "address": 0}, {"name": "missing", "address": 500, "type": "float32"}]
    async with ModbusTestServer(lambda: [device(1, holding={0: [7, 8]})]) as server:
        sink = CollectingSink()
        async with Running(make(tcp_source("press-3", server.port, registers), sink)) as src:
            await wait_state(src, SourceState.DEGRADED)
            seen = len(sink.frames)
            await sink.wait_for(seen + 3)
    assert src.health.reason is not None
    assert "press-3 at 127.0.0.1" in src.health.reason
    assert "holding 500..501 (missing)" in src.health.reason
    assert "illegal data address" in src.health.reason
    assert all(f.sensors == {"good": 7} for f in sink.frames)
    assert "holding 500..501 (missing)" in src.health.detail["failing_blocks"]


async def test_a_merged_read_over_a_hole_in_the_device_map_is_split_and_every_value_flows():
    registers = [{"name": "a", "address": 2}, {"name": "b", "address": 25}]
    async with ModbusTestServer(lambda: [device(1, holding={0: [1, 2, 3], 20: [0] * 5 + [26]})]) as server:
        sink = CollectingSink()
        config = tcp_source("press-3", server.port, registers, max_gap=30)
        async with Running(make(config, sink)) as src:
            await wait_until(lambda: any(f.sensors == {"a": 3, "b": 26} for f in sink.frames))
            await sink.wait_for(len(sink.frames) + 2)
    assert src.health.state == SourceState.CONNECTED
    assert all(f.sensors == {"a": 3, "b": 26} for f in sink.frames)  # no value was lost to the split
    assert src.health.detail["blocks"] == 2  # planned as one read, read as two after the device refused it
    assert src.health.detail["requests_per_cycle"] == 2


async def test_a_broken_device_does_not_stop_its_neighbour():
    def devices() -> list[Any]:
        return [device(1, holding={0: [11]}), device(2, holding={900: [1]})]

    async with ModbusTestServer(devices) as server:
        good_sink, bad_sink = CollectingSink(), CollectingSink()
        good = make(tcp_source("line-1", server.port, [{"name": "x", "address": 0}], unit_id=1), good_sink)
        bad = make(tcp_source("line-2", server.port, [{"name": "x", "address": 0}], unit_id=2), bad_sink)
        async with Running(good), Running(bad):
            await wait_state(bad, SourceState.DEGRADED)
            await good_sink.wait_for(len(good_sink.frames) + 5)
    assert good.health.state == SourceState.CONNECTED
    assert bad_sink.frames == []
    assert "line-2" in (bad.health.reason or "") and "illegal data address" in (bad.health.reason or "")


async def test_reconnects_after_the_server_is_stopped_and_started_again(caplog: pytest.LogCaptureFixture):
    server = ModbusTestServer(lambda: [device(1, holding={0: [42]})])
    await server.start()
    sink = CollectingSink()
    try:
        async with Running(make(tcp_source("press-3", server.port, [{"name": "x", "address": 0}]), sink)) as src:
            await sink.wait_for(2)
            await server.stop()
            await wait_state(src, SourceState.DISCONNECTED)
            reason = src.health.reason or ""
            assert "Modbus device press-3 at 127.0.0.1" in reason
            assert "refused the connection" in reason or "lost the connection" in reason
            assert src.health.snapshot()["retry_at"] is not None  # when the next attempt is due
            await wait_until(lambda: "refused the connection" in (src.health.reason or ""))
            errors = src.health.errors
            await wait_until(lambda: src.health.errors >= errors + 2)  # more attempts ...
            logged = [r for r in caplog.records if "refused the connection" in r.getMessage()]
            assert len(logged) == 1  # ... and one line in the log for the whole outage
            before = len(sink.frames)
            await server.start()
            await sink.wait_for(before + 2)
            await wait_state(src, SourceState.CONNECTED)
    finally:
        await server.stop()
    assert src.health.reconnects >= 1
    assert src.health.errors >= 1
    assert sink.frames[-1].sensors == {"x": 42}


async def test_an_unreachable_device_is_retried_not_fatal():
    server = ModbusTestServer(lambda: [device(1)])  # never started: nothing listens on its port
    sink = CollectingSink()
    async with Running(make(tcp_source("press-9", server.port, [{"name": "x", "address": 0}]), sink)) as src:
        await wait_until(lambda: src.health.errors >= 2)
    assert src.health.state == SourceState.DISCONNECTED
    assert "press-9 at 127.0.0.1" in (src.health.reason or "") and "refused the connection" in (src.health.reason or "")
    assert sink.frames == []


async def test_deadband_reports_only_real_moves():
    registers = [{"name": "tick", "address": 0}, {"name": "temp", "address": 2, "type": "float32", "deadband": 0.5}]
    async with ModbusTestServer(lambda: [device(1, holding={0: [0, 0] + f32(10.0)})]) as server:
        sink = CollectingSink()
        async with Running(make(tcp_source("oven", server.port, registers, heartbeat="1h"), sink)):
            await sink.wait_for(1)
            await write_registers(server.port, 2, f32(10.25))  # inside the band: not reported
            await sink.wait_for(len(sink.frames) + 3)
            await write_registers(server.port, 2, f32(10.75))  # 0.75 from the last report
            await wait_until(lambda: 10.75 in with_sensor(sink.frames, "temp"))
    assert with_sensor(sink.frames, "temp") == [10.0, 10.75]
    assert all("tick" in f.sensors for f in sink.frames)


async def test_the_heartbeat_repeats_a_flat_value():
    registers = [{"name": "flat", "address": 0, "deadband": 1.0}]
    async with ModbusTestServer(lambda: [device(1, holding={0: [5]})]) as server:
        sink = CollectingSink()
        async with Running(make(tcp_source("oven", server.port, registers, heartbeat="60ms"), sink)):
            await sink.wait_for(3)
    assert [f.sensors for f in sink.frames[:3]] == [{"flat": 5}] * 3


class StallingSink(CollectingSink):
    """Holds the first put until released: a store writer that fell behind."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.stalled = asyncio.Event()

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        self.stalled.set()
        await self.release.wait()
        await super().put(frames, durable=durable, events=events, documents=documents, position=position)


async def test_backpressure_skips_and_counts_missed_cycles_instead_of_bursting():
    async with ModbusTestServer(lambda: [device(1, holding={0: [1]})]) as server:
        sink = StallingSink()
        config = tcp_source("press-3", server.port, [{"name": "x", "address": 0}], poll_interval="20ms")
        async with Running(make(config, sink)) as src:
            await asyncio.wait_for(sink.stalled.wait(), 5)
            await asyncio.sleep(0.3)  # the writer is stuck for 15 poll periods
            sink.release.set()
            await sink.wait_for(3)
    assert src.health.detail["missed_cycles"] >= 10


async def test_a_nan_reading_is_left_out_and_named_in_health():
    registers = [{"name": "ok", "address": 0}, {"name": "probe_t", "address": 1, "type": "float32"}]
    async with ModbusTestServer(lambda: [device(1, holding={0: [3, 0x7FC0, 0x0000]})]) as server:
        sink = CollectingSink()
        async with Running(make(tcp_source("oven", server.port, registers), sink)) as src:
            await sink.wait_for(2)
    assert all(f.sensors == {"ok": 3} for f in sink.frames)
    assert src.health.detail["invalid_values"] == {"probe_t": "is not a finite number (nan)"}
