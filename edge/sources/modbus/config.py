"""Config of a Modbus source: where the device is (TCP, or RTU on a serial line), how often to poll it,
and its register map. Loading it needs no Modbus library: pymodbus is imported by the source itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge.sources.modbus.map import MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ, RegisterConfig, check_register_map
from shared.configbase import Duration, StrictModel
from shared.frame import DEVICE_ID_PATTERN, MAX_SENSORS

__all__ = ["ModbusSourceConfig", "RegisterConfig", "RtuConfig", "TcpConfig", "check_serial_ports"]


class TcpConfig(StrictModel):
    """Modbus TCP endpoint of one device (or of a gateway in front of it)."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(502, ge=1, le=65535)


class RtuConfig(StrictModel):
    """A serial line. Every RTU source naming the same port must give the same settings."""

    port: str = Field(min_length=1, max_length=255, description="e.g. /dev/ttyUSB0 (or a pyserial URL)")
    baudrate: Literal[1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400] = 19200
    parity: Literal["none", "even", "odd"] = "even"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    inter_frame_gap: Duration | None = Field(
        None, ge=0.0, le=1.0, description="silence between frames; default 3.5 character times"
    )

    def gap_seconds(self) -> float:
        if self.inter_frame_gap is not None:
            return self.inter_frame_gap
        bits = 1 + self.bytesize + (0 if self.parity == "none" else 1) + self.stopbits
        return 0.00175 if self.baudrate > 19200 else 3.5 * bits / self.baudrate


class ModbusSourceConfig(StrictModel):
    """One Modbus device: where it is, how often to poll it, and its register map."""

    kind: Literal["modbus"]
    name: str = Field(pattern=DEVICE_ID_PATTERN, description="source name; also the default device_id")
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN, description="device id in frames")
    tcp: TcpConfig | None = None
    rtu: RtuConfig | None = None
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id; 1..247 on a serial line")
    poll_interval: Duration = Field(1.0, ge=0.01, le=86_400.0)
    timeout: Duration = Field(1.0, ge=0.01, le=60.0, description="per request")
    heartbeat: Duration = Field(60.0, ge=0.01, le=86_400.0, description="report all values at least this often")
    max_registers_per_read: int = Field(MAX_REGISTERS_PER_READ, ge=1, le=MAX_REGISTERS_PER_READ)
    max_bits_per_read: int = Field(MAX_BITS_PER_READ, ge=1, le=MAX_BITS_PER_READ)
    max_gap: int = Field(10, ge=0, le=MAX_REGISTERS_PER_READ, description="unused registers a read may bridge")
    registers: list[RegisterConfig] = Field(min_length=1, max_length=MAX_SENSORS)

    @field_validator("registers")
    @classmethod
    def _sane_map(cls, registers: list[RegisterConfig], info: Any) -> list[RegisterConfig]:
        data = info.data
        check_register_map(
            registers,
            data.get("max_registers_per_read", MAX_REGISTERS_PER_READ),
            data.get("max_bits_per_read", MAX_BITS_PER_READ),
        )
        return registers

    @model_validator(mode="after")
    def _one_transport(self) -> ModbusSourceConfig:
        if (self.tcp is None) == (self.rtu is None):
            raise ValueError("give exactly one of [tcp] (host, port) or [rtu] (serial port settings)")
        if self.rtu is not None and not 1 <= self.unit_id <= 247:
            raise ValueError(f"unit_id on a serial line must be 1..247 (got {self.unit_id})")
        return self

    @property
    def frame_device_id(self) -> str:
        return self.device_id or self.name

    def describe(self) -> str:
        """How a person would name this device in a log line."""
        if self.tcp is not None:
            return f"Modbus device {self.name} at {self.tcp.host}:{self.tcp.port} unit {self.unit_id}"
        assert self.rtu is not None
        return f"Modbus device {self.name} on {self.rtu.port} unit {self.unit_id}"


def check_serial_ports(sources: Sequence[object]) -> None:
    """Refuse two RTU sources that give one serial port different settings (for the root config)."""
    seen: dict[str, tuple[str, RtuConfig]] = {}
    for src in sources:
        if not isinstance(src, ModbusSourceConfig) or src.rtu is None:
            continue
        first = seen.setdefault(src.rtu.port, (src.name, src.rtu))
        if first[1] != src.rtu:
            raise ValueError(
                f"sources {first[0]!r} and {src.name!r} share serial port {src.rtu.port} with different "
                "settings; every device on one line must use the same baudrate, parity, stopbits and bytesize"
            )
