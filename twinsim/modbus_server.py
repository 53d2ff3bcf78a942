"""Modbus TCP side of the simulator: the machines' PLCs, one port each (default) or unit ids on one port.

Built on pymodbus's SimDevice/SimData datastore (the classic datastore classes
log a deprecation notice in 3.16). Registers are not rewritten on every tick:
each device has a read hook (the SimDevice ``action``) that copies the latest
encoded snapshot into the register block when a request arrives and the data
is older than the last tick. Idle devices cost nothing, and a busy one costs
one encode per tick, however many registers it has.

Per-port mode: machine *n* listens on ``port + n - 1`` and answers any unit
id, like a PLC with its own IP address. Unit mode: all machines share one
port, machine *n* is unit id *n* (like a gateway); an offline machine answers
with exception 0x0B (gateway target failed to respond).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from twinsim.machine import Machine
from twinsim.registers import (
    CORE_HOLDING,
    HOLDING,
    STATION_COILS,
    STATION_CORE_HOLDING,
    coil_bits,
    discrete_bits,
    encode_bits,
    encode_holding,
    encode_input,
    encode_station_holding,
    station_coil_bits,
)
from twinsim.station import Station

__all__ = ["MAX_REGISTERS", "ModbusEndpoint", "ModbusSim"]

log = logging.getLogger(__name__)

MAX_REGISTERS = 10_000
_READ_FUNCTIONS = {1: "coil", 2: "discrete_input", 3: "holding", 4: "input"}
_SPINDLE_TEMP = next(f for f in HOLDING if f.name == "spindle_temp")


@dataclass(frozen=True)
class ModbusEndpoint:
    machine: str
    host: str
    port: int
    unit: int


@dataclass
class _Device:
    """One machine's (or moulding station's) Modbus face: its encoded snapshot and which blocks already hold it."""

    machine: Machine | Station
    padding: int
    number: int  # its place on the bus: unit id in unit mode, port offset + 1 per port
    encoded_tick: int = -1
    blocks: dict[str, list[int]] = field(default_factory=dict)
    copied: dict[str, int] = field(default_factory=dict)


class ModbusSim:
    """Serves a list of machines over Modbus TCP; ``tick()`` marks new data after the machines stepped."""

    def __init__(
        self,
        machines: Sequence[Machine],
        host: str = "127.0.0.1",
        port: int = 5020,
        *,
        per_port: bool = True,
        registers: int = CORE_HOLDING,
        stations: Sequence[Station] = (),
    ) -> None:
        if not CORE_HOLDING <= registers <= MAX_REGISTERS:
            raise ValueError(f"registers must be {CORE_HOLDING}..{MAX_REGISTERS} (got {registers})")
        total = len(machines) + len(stations)
        if not per_port and total > 247:
            raise ValueError("unit ids only go up to 247; use one port per machine for more machines")
        if per_port and port + total - 1 > 65535:
            raise ValueError(f"ports {port}..{port + total - 1} do not fit below 65536")
        self.host = host
        self.port = port
        self.per_port = per_port
        self.registers = registers
        # stations come after the machines: the next ports (or unit ids)
        self._devices = {m.name: _Device(m, registers - CORE_HOLDING, m.number) for m in machines}
        self._devices.update({s.name: _Device(s, 0, len(machines) + s.number) for s in stations})
        self._tick = 0
        self._servers: dict[str, ModbusTcpServer] = {}  # key: machine name, or "" in unit mode
        self._identity = ModbusDeviceIdentification(
            info_name={"VendorName": "twinedge", "ProductCode": "twinsim", "ModelName": "simulated CNC cell"}
        )

    # --- layout -------------------------------------------------------------------

    def endpoints(self) -> list[ModbusEndpoint]:
        """Where each machine can be read: host, port and unit id."""
        out = []
        for dev in self._devices.values():
            number = dev.number
            port = self.port + number - 1 if self.per_port else self.port
            out.append(ModbusEndpoint(dev.machine.name, self.host, port, 1 if self.per_port else number))
        return out

    def _sim_device(self, dev: _Device, unit: int) -> SimDevice:
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            return self._on_request(dev, function_code, address, count, registers, set_values)

        if isinstance(dev.machine, Station):  # no inputs or discrete inputs (pymodbus wants a block: read-refused)
            return SimDevice(unit, simdata=(
                [SimData(0, values=[False] * len(STATION_COILS), datatype=DataType.BITS, readonly=True)],
                [SimData(0, values=[False], datatype=DataType.BITS, readonly=True)],
                [SimData(0, values=[0] * STATION_CORE_HOLDING, datatype=DataType.REGISTERS, readonly=True)],
                [SimData(0, values=[0], datatype=DataType.REGISTERS, readonly=True)],
            ), identity=self._identity, action=action)
        holding = SimData(0, values=[0] * self.registers, datatype=DataType.REGISTERS, readonly=True)
        inputs = SimData(0, values=[0, 0], datatype=DataType.REGISTERS, readonly=True)
        coils = SimData(0, values=[False] * 5, datatype=DataType.BITS, readonly=True)
        discrete = SimData(0, values=[False] * 2, datatype=DataType.BITS, readonly=True)
        return SimDevice(unit, simdata=([coils], [discrete], [holding], [inputs]), identity=self._identity,
                         action=action)

    # --- requests -----------------------------------------------------------------

    def _on_request(
        self,
        dev: _Device,
        function_code: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _READ_FUNCTIONS.get(function_code)
        if set_values is not None or table is None:
            return ExcCodes.ILLEGAL_ADDRESS  # the map is read-only, like a PLC's process image
        machine = dev.machine
        if not machine.online:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if isinstance(machine, Station):
            return self._station_request(dev, machine, table, registers)
        reading = machine.reading()
        if (
            table == "holding"
            and reading.spindle_temp_status == "failed"
            and address < _SPINDLE_TEMP.address + _SPINDLE_TEMP.count
            and address + count > _SPINDLE_TEMP.address
        ):
            return ExcCodes.DEVICE_FAILURE
        if dev.encoded_tick != self._tick:
            dev.blocks = {
                "holding": encode_holding(reading, dev.padding, self._tick),
                "input": encode_input(reading),
                "coil": [encode_bits(coil_bits(reading))],
                "discrete_input": [encode_bits(discrete_bits(reading))],
            }
            dev.encoded_tick = self._tick
        self._copy_block(dev, table, registers)
        return None

    def _station_request(self, dev: _Device, station: Station, table: str, registers: list[int]) -> ExcCodes | None:
        if table not in ("holding", "coil"):
            return ExcCodes.ILLEGAL_ADDRESS
        if dev.encoded_tick != self._tick:
            reading = station.reading()
            dev.blocks = {"holding": encode_station_holding(reading),
                          "coil": [encode_bits(station_coil_bits(reading))]}
            dev.encoded_tick = self._tick
        self._copy_block(dev, table, registers)
        return None

    def _copy_block(self, dev: _Device, table: str, registers: list[int]) -> None:
        """Copy the device's snapshot of ``table`` into its register block, once per tick."""
        if dev.copied.get(table) != self._tick:
            data = dev.blocks[table]
            registers[: len(data)] = data
            dev.copied[table] = self._tick

    def tick(self) -> None:
        """The machines stepped: the next request of each device re-encodes its snapshot."""
        self._tick += 1

    # --- lifecycle ----------------------------------------------------------------

    async def _serve(self, key: str, devices: list[SimDevice], port: int) -> None:
        server = ModbusTcpServer(devices, address=(self.host, port), identity=self._identity)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus raises RuntimeError when it cannot listen
            raise OSError(f"cannot listen for Modbus on {self.host}:{port} (port in use?)") from exc
        self._servers[key] = server

    async def start(self) -> None:
        """Listen on every port; raises OSError naming the port when one cannot be bound."""
        try:
            if self.per_port:
                for ep, dev in zip(self.endpoints(), self._devices.values(), strict=True):
                    await self._serve(ep.machine, [self._sim_device(dev, 0)], ep.port)
            else:
                devices = [self._sim_device(dev, dev.number) for dev in self._devices.values()]
                await self._serve("", devices, self.port)
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        servers, self._servers = self._servers, {}
        for server in servers.values():
            await server.shutdown()

    async def set_online(self, machine: str, online: bool) -> None:
        """A PLC restart: in per-port mode the machine's port closes and later listens again."""
        dev = self._devices[machine]
        if not self.per_port:
            log.info("Modbus unit %d (%s) is %s", dev.number, machine, "back" if online else "offline")
            return  # the shared port stays; requests to the unit get exception 0x0B meanwhile
        port = self.port + dev.number - 1
        if online:
            if machine not in self._servers:
                dev.encoded_tick = -1
                dev.copied.clear()
                await self._serve(machine, [self._sim_device(dev, 0)], port)
                log.info("PLC %s on %s:%d is back after a restart", machine, self.host, port)
            return
        server = self._servers.pop(machine, None)
        if server is not None:
            await server.shutdown()
            log.info("PLC %s on %s:%d restarts: the port is closed until it boots", machine, self.host, port)
        # give the closed sockets a loop iteration so the port really refuses new connections
        await asyncio.sleep(0)
