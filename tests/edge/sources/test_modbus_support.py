"""Real pymodbus servers for the Modbus tests (TCP, and RTU framing over a socket:// serial URL).

Not a test module itself: the Modbus test files import it. Register values are
writable, so tests change them with an ordinary Modbus client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.sources import SourceState, build_source
from edge.sources.modbus import ModbusSourceConfig
from edge.sources.modbus.source import ModbusSource
from tests.support import free_port

RegisterSpec = dict[int, Sequence[int]]  # first address -> register values (holes are unmapped)
BitSpec = dict[int, Sequence[bool]]


def device(
    unit: int,
    *,
    holding: RegisterSpec | None = None,
    input: RegisterSpec | None = None,  # noqa: A002 - the Modbus table's name
    coils: BitSpec | None = None,
    discrete: BitSpec | None = None,
) -> SimDevice:
    """A simulated device; addresses not listed answer 'illegal data address'."""

    def regs(spec: RegisterSpec | None) -> list[SimData]:
        spec = spec or {0: [0]}
        return [SimData(a, values=list(v), datatype=DataType.REGISTERS) for a, v in spec.items()]

    def bits(spec: BitSpec | None) -> list[SimData]:
        spec = spec or {0: [False] * 16}
        return [SimData(a, values=list(v), datatype=DataType.BITS) for a, v in spec.items()]

    return SimDevice(id=unit, simdata=(bits(coils), bits(discrete), regs(holding), regs(input)))


class ModbusTestServer:
    """A pymodbus server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(
        self,
        devices: Callable[[], list[SimDevice]],
        *,
        rtu: bool = False,
        ignore_missing_devices: bool = False,
    ) -> None:
        self.devices = devices
        self.rtu = rtu
        self.port = free_port()
        self.ignore_missing_devices = ignore_missing_devices
        self.trace: list[tuple[str, float]] = []  # ("recv" | "send", monotonic time)
        self.connections = 0
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _packet(self, sending: bool, data: bytes) -> bytes:
        self.trace.append(("send" if sending else "recv", time.monotonic()))
        return data

    def _connect(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    async def start(self) -> None:
        common: dict[str, Any] = {
            "trace_packet": self._packet,
            "trace_connect": self._connect,
            "ignore_missing_devices": self.ignore_missing_devices,
        }
        if self.rtu:
            self._server = ModbusSerialServer(self.devices(), port=self.url, framer=FramerType.RTU, **common)
        else:
            self._server = ModbusTcpServer(self.devices(), address=("127.0.0.1", self.port), **common)
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> ModbusTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def write_registers(port: int, address: int, values: list[int], unit: int = 1) -> None:
    """Change a TCP test server's holding registers as any Modbus master would."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await client.connect()
    try:
        response = await client.write_registers(address, values, device_id=unit)
        assert not response.isError(), response
    finally:
        client.close()


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for a condition that no event signals (source health), bounded by a timeout."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - SourceHealth has no change event to wait on
            await asyncio.sleep(0.01)


async def wait_state(source: Any, state: SourceState, within: float = 10.0) -> None:
    await wait_until(lambda: source.health.state == state, within)


def tcp_source(name: str, port: int, registers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A modbus source config dict for a test server."""
    config: dict[str, Any] = {
        "kind": "modbus",
        "name": name,
        "tcp": {"host": "127.0.0.1", "port": port},
        "poll_interval": "20ms",
        "timeout": "500ms",
        "registers": registers,
    }
    config.update(extra)
    return config


def make(config: dict[str, Any], sink: Any) -> ModbusSource:
    source = build_source(ModbusSourceConfig.model_validate(config), sink)
    assert isinstance(source, ModbusSource)
    return source


class Running:
    """Runs a source as a named task for the length of a with-block."""

    def __init__(self, source: ModbusSource) -> None:
        self.source = source
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ModbusSource:
        self.task = asyncio.create_task(self.source.run(), name=f"source {self.source.name}")
        return self.source

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
