"""Modbus links: one TCP connection per device, and one shared scheduler per serial (RS-485) port.

Several RTU devices on one RS-485 line share one serial port, and the port can
be opened once. ``acquire_bus`` hands every source that names the same port the
same ``SerialBus``: one pymodbus client, one lock, so there is never more than
one request on the wire, and a silent interval of at least 3.5 character times
(1.75 ms above 19200 baud, as the Modbus serial line spec says) between the
end of one exchange and the next request.

pymodbus errors are translated here: ``LinkError`` (the device or port cannot
be reached or does not answer) and ``DeviceError`` (the device answered with a
Modbus exception code).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edge.sources.modbus.config import RtuConfig, TcpConfig
from shared.errors import TwinedgeError

__all__ = [
    "BusConflictError",
    "BusLink",
    "DeviceError",
    "LinkError",
    "NoAnswer",
    "SerialBus",
    "TcpLink",
    "acquire_bus",
    "release_bus",
]

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: ("illegal function", "the device does not support reading this table"),
    2: ("illegal data address", "the device has no such registers; check the register map"),
    3: ("illegal data value", "the device refused the request size; lower max_registers_per_read"),
    4: ("server device failure", "the device failed while reading"),
    5: ("acknowledge", "the device is busy with a long operation"),
    6: ("server device busy", "the device is busy; it may answer later"),
    8: ("memory parity error", "the device reported a memory fault"),
    10: ("gateway path unavailable", "the gateway has no route to this unit id"),
    11: ("gateway target device failed to respond", "the device behind the gateway did not answer"),
}

_READERS = {
    "coil": "read_coils",
    "discrete_input": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}


class LinkError(TwinedgeError):
    """The device or port is unreachable or silent; the message is for a person."""


class NoAnswer(LinkError):
    """The link is up but the device did not answer a request in time."""


class BusConflictError(TwinedgeError):
    """Two sources give one serial port different settings: a config error."""


class DeviceError(TwinedgeError):
    """The device answered a read with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        self.code = code
        name, hint = EXCEPTION_NAMES.get(code, ("unknown exception", "see the device manual"))
        super().__init__(f"the device answered '{name}' (exception {code}): {hint}")


async def read_block(
    client: AsyncModbusTcpClient | AsyncModbusSerialClient, unit: int, table: str, address: int, count: int
) -> list[int] | list[bool]:
    """One read request; raises DeviceError on an exception answer, LinkError when there is no answer."""
    reader = getattr(client, _READERS[table])
    try:
        response = await reader(address, count=count, device_id=unit)
    except ConnectionException as exc:
        raise LinkError("lost the connection") from exc
    except ModbusIOException as exc:
        raise NoAnswer("did not answer in time") from exc
    except ModbusException as exc:
        raise LinkError(f"sent an answer that could not be read ({exc})") from exc
    if response.isError():
        raise DeviceError(int(getattr(response, "exception_code", 0)))
    values: list[int] | list[bool] = response.bits if table in ("coil", "discrete_input") else response.registers
    if len(values) < count:
        raise LinkError(f"answered {len(values)} values where {count} were asked for")
    return values[:count]


async def _tcp_refusal(host: str, port: int, wait: float) -> str:
    """Why a TCP connect failed, in plain words (pymodbus only says that it failed)."""
    try:
        async with asyncio.timeout(wait):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return "did not accept the connection in time"
    except ConnectionRefusedError:
        return "refused the connection"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "is not reachable on the network"
        return f"could not be reached ({exc.strerror or exc})"
    writer.close()
    return "accepted a TCP connection but the Modbus client could not attach"


class TcpLink:
    """One device over Modbus TCP: its own connection and its own timeout."""

    def __init__(self, config: TcpConfig, unit: int, timeout: float) -> None:
        self.config, self.unit, self.timeout = config, unit, timeout
        self.where = f"{config.host}:{config.port}"
        self._client: AsyncModbusTcpClient | None = None

    async def connect(self) -> None:
        if self._client is not None and self._client.connected:
            return
        await self.close()
        client = AsyncModbusTcpClient(
            self.config.host, port=self.config.port, timeout=self.timeout, retries=0, reconnect_delay=0
        )
        if not await client.connect():
            client.close()
            raise LinkError(await _tcp_refusal(self.config.host, self.config.port, self.timeout))
        self._client = client

    async def read(self, table: str, address: int, count: int) -> list[int] | list[bool]:
        if self._client is None:
            raise LinkError("is not connected")
        return await read_block(self._client, self.unit, table, address, count)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SerialBus:
    """One RS-485 line: one client, one request at a time, silent gaps between frames."""

    def __init__(self, config: RtuConfig) -> None:
        self.config = config
        self.gap = config.gap_seconds()
        self.users = 0
        self.requests = 0
        self._client: AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()
        self._quiet_from = 0.0  # monotonic time at which the line has been silent long enough

    async def open(self) -> None:
        async with self._lock:
            if self._client is not None and self._client.connected:
                return
            self._close()
            client = AsyncModbusSerialClient(
                self.config.port,
                baudrate=self.config.baudrate,
                parity=self.config.parity[0].upper(),
                stopbits=self.config.stopbits,
                bytesize=self.config.bytesize,
                timeout=60.0,  # each request carries its own device timeout (asyncio.timeout below)
                retries=0,
                reconnect_delay=0,
            )
            if not await client.connect():
                client.close()
                raise LinkError(self._port_problem())
            self._client = client

    def _port_problem(self) -> str:
        port = self.config.port
        if "://" in port:
            return f"cannot be reached: serial port {port} could not be opened"
        if not os.path.exists(port):
            return f"cannot be reached: serial port {port} does not exist (is the adapter plugged in?)"
        if not os.access(port, os.R_OK | os.W_OK):
            return f"cannot be reached: this user may not read and write {port} (add it to group dialout)"
        return f"cannot be reached: serial port {port} could not be opened (is another program using it?)"

    async def read(
        self, unit: int, table: str, address: int, count: int, answer_within: float
    ) -> list[int] | list[bool]:
        async with self._lock:
            if self._client is None or not self._client.connected:
                raise LinkError(f"cannot be reached: serial port {self.config.port} is not open")
            wait = self._quiet_from - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(answer_within):
                    return await read_block(self._client, unit, table, address, count)
            except TimeoutError:
                raise NoAnswer("did not answer in time") from None
            finally:
                self.requests += 1
                self._quiet_from = time.monotonic() + self.gap

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def close(self) -> None:
        async with self._lock:
            self._close()


_BUSES: dict[str, SerialBus] = {}


def acquire_bus(config: RtuConfig) -> SerialBus:
    """The one bus for this port, created on first use. Conflicting settings are refused."""
    bus = _BUSES.get(config.port)
    if bus is None:
        bus = _BUSES[config.port] = SerialBus(config)
    elif bus.config != config:
        raise BusConflictError(
            f"serial port {config.port} is configured twice with different settings "
            f"({_settings(bus.config)} and {_settings(config)}); every device on one line must use the same"
        )
    bus.users += 1
    return bus


def _settings(config: RtuConfig) -> str:
    return f"{config.baudrate} baud, {config.bytesize}{config.parity[0].upper()}{config.stopbits}"


async def release_bus(bus: SerialBus) -> None:
    """Give the bus back; the last user closes the port."""
    bus.users -= 1
    if bus.users <= 0:
        if _BUSES.get(bus.config.port) is bus:
            del _BUSES[bus.config.port]
        await bus.close()


class BusLink:
    """One RTU device (unit id) on a shared serial bus."""

    def __init__(self, config: RtuConfig, unit: int, timeout: float) -> None:
        self.config, self.unit, self.timeout = config, unit, timeout
        self.where = config.port
        self._bus: SerialBus | None = None

    async def connect(self) -> None:
        if self._bus is None:
            self._bus = acquire_bus(self.config)
        await self._bus.open()

    async def read(self, table: str, address: int, count: int) -> list[int] | list[bool]:
        if self._bus is None:
            raise LinkError(f"cannot be reached: serial port {self.config.port} is not open")
        return await self._bus.read(self.unit, table, address, count, self.timeout)

    async def close(self) -> None:
        """Leave the bus; only the last device on it closes the port."""
        if self._bus is not None:
            bus, self._bus = self._bus, None
            await release_bus(bus)
