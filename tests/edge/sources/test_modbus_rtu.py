"""Modbus RTU: several devices on one serial line share one bus scheduler.

The line is a pymodbus RTU server reached through pyserial's socket:// URL, so
real RTU frames (CRC and all) cross a real connection; the server records when
each frame arrived and left.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.simulator import SimDevice

from edge.sources import SourceState
from edge.sources.modbus import ModbusSourceConfig, RtuConfig, check_serial_ports
from edge.sources.modbus.client import BusConflictError
from tests.edge.sources.test_modbus_support import ModbusTestServer, Running, device, make, wait_state
from tests.support import CollectingSink


def rtu_source(name: str, url: str, unit: int, **rtu: Any) -> dict[str, Any]:
    return {
        "kind": "modbus",
        "name": name,
        "unit_id": unit,
        "rtu": {"port": url, "baudrate": 19200, **rtu},
        "poll_interval": "20ms",
        "timeout": "200ms",
        "registers": [{"name": "value", "address": 0}, {"name": "other", "address": 1}],
    }


def test_the_default_gap_is_three_and_a_half_characters():
    assert RtuConfig(port="/dev/ttyUSB0", baudrate=9600, parity="even").gap_seconds() == pytest.approx(3.5 * 11 / 9600)
    assert RtuConfig(port="/dev/ttyUSB0", baudrate=9600, parity="none", stopbits=1).gap_seconds() == pytest.approx(
        3.5 * 10 / 9600
    )
    assert RtuConfig(port="/dev/ttyUSB0", baudrate=115200).gap_seconds() == pytest.approx(0.00175)


async def test_devices_on_one_line_take_turns_with_silent_gaps():
    def line() -> list[SimDevice]:
        return [device(unit, holding={0: [unit * 10, unit * 10 + 1]}) for unit in (1, 2, 3)]

    async with ModbusTestServer(line, rtu=True) as server:
        sinks = [CollectingSink() for _ in range(3)]
        sources = [
            make(rtu_source(f"meter-{unit}", server.url, unit, inter_frame_gap="15ms"), sinks[unit - 1])
            for unit in (1, 2, 3)
        ]
        async with Running(sources[0]), Running(sources[1]), Running(sources[2]):
            for sink in sinks:
                await sink.wait_for(4)
    for unit, sink in enumerate(sinks, start=1):
        assert sink.frames[0].sensors == {"value": unit * 10, "other": unit * 10 + 1}
    assert server.connections == 1  # one port, opened once, for all three devices
    kinds = [kind for kind, _ in server.trace]
    assert kinds[: len(kinds) // 2 * 2] == ["recv", "send"] * (len(kinds) // 2)  # never two requests at once
    gaps = [server.trace[i + 1][1] - server.trace[i][1] for i in range(1, len(server.trace) - 1, 2)]
    assert gaps and min(gaps) >= 0.015  # the line stayed silent for the gap after every answer


async def test_a_silent_device_is_marked_disconnected_and_its_neighbours_keep_flowing():
    release = asyncio.Event()

    async def never_answer(*_: Any) -> ExcCodes | None:
        await release.wait()
        return ExcCodes.DEVICE_FAILURE

    def line() -> list[SimDevice]:
        silent = device(9, holding={0: [0, 0]})
        silent.action = never_answer
        return [device(1, holding={0: [5, 6]}), silent]

    async with ModbusTestServer(line, rtu=True) as server:
        good_sink, silent_sink = CollectingSink(), CollectingSink()
        good = make(rtu_source("meter-1", server.url, 1), good_sink)
        silent = make(rtu_source("meter-9", server.url, 9), silent_sink)
        try:
            async with Running(good), Running(silent):
                await wait_state(silent, SourceState.DISCONNECTED)
                await good_sink.wait_for(len(good_sink.frames) + 5)
        finally:
            release.set()
    assert silent_sink.frames == []
    assert silent.health.reason is not None
    assert f"Modbus device meter-9 on {server.url} unit 9 did not answer in time" in silent.health.reason
    assert good.health.state == SourceState.CONNECTED


async def test_one_line_with_two_different_settings_is_refused():
    first = ModbusSourceConfig.model_validate(rtu_source("a", "/dev/ttyUSB7", 1, baudrate=9600))
    second = ModbusSourceConfig.model_validate(rtu_source("b", "/dev/ttyUSB7", 2, baudrate=19200))
    with pytest.raises(ValueError, match="share serial port /dev/ttyUSB7 with different settings"):
        check_serial_ports([first, second])
    check_serial_ports([first, first.model_copy(update={"name": "c", "unit_id": 3})])


async def test_a_missing_serial_port_is_reported_in_plain_words():
    sink = CollectingSink()
    source = make(rtu_source("meter-1", "/dev/ttyNOSUCHPORT0", 1), sink)
    async with Running(source):
        await wait_state(source, SourceState.DISCONNECTED)
    assert "serial port /dev/ttyNOSUCHPORT0 does not exist" in (source.health.reason or "")


def test_unit_ids_on_a_serial_line_are_1_to_247():
    with pytest.raises(ValueError, match="unit_id on a serial line must be 1..247"):
        ModbusSourceConfig.model_validate(rtu_source("a", "/dev/ttyUSB0", 0))


async def test_a_second_device_with_other_line_settings_fails_without_touching_the_first():
    async with ModbusTestServer(lambda: [device(1, holding={0: [1, 2]}), device(2, holding={0: [3, 4]})],
                                rtu=True) as server:
        first_sink = CollectingSink()
        first = make(rtu_source("meter-1", server.url, 1), first_sink)
        second = make(rtu_source("meter-2", server.url, 2, baudrate=9600), CollectingSink())
        async with Running(first):
            await first_sink.wait_for(1)
            with pytest.raises(BusConflictError, match="configured twice with different settings"):
                await second.run()
            assert second.health.state == SourceState.FAILED
            await first_sink.wait_for(len(first_sink.frames) + 3)
    assert first.health.state == SourceState.CONNECTED
