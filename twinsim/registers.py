"""The simulator's Modbus register map: one table that the server, the config generator and the docs share.

Addresses are 0-based protocol addresses. Floats and 32-bit counters come in
both word orders on purpose, because real PLCs do: ``ABCD`` means the high word
comes first, ``CDAB`` the low word first; bytes within a word are always
big-endian. Holding registers from ``CORE_HOLDING`` up to the
``--registers`` count are padding for benchmarks: uint16 values that change
on every tick.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from twinsim.machine import Reading
from twinsim.station import StationReading

__all__ = [
    "COILS",
    "CORE_HOLDING",
    "DISCRETE_INPUTS",
    "HOLDING",
    "INPUT",
    "PADDING_PERIOD",
    "STATION_COILS",
    "STATION_CORE_HOLDING",
    "STATION_HOLDING",
    "RegisterField",
    "coil_bits",
    "discrete_bits",
    "encode_bits",
    "encode_holding",
    "encode_input",
    "encode_station_holding",
    "station_coil_bits",
]

Table = Literal["holding", "input", "coil", "discrete_input"]
DataType = Literal["int16", "uint16", "uint32", "float32", "bool"]
Order = Literal["ABCD", "CDAB"]


@dataclass(frozen=True)
class RegisterField:
    name: str
    table: Table
    address: int
    type: DataType
    order: Order = "ABCD"
    scale: float = 1.0
    unit: str = ""
    description: str = ""

    @property
    def count(self) -> int:
        return 2 if self.type in ("uint32", "float32") else 1


HOLDING: tuple[RegisterField, ...] = (
    RegisterField("spindle_temp", "holding", 0, "float32", "ABCD", unit="°C",
                  description="spindle bearing temperature; -999.0 while the sensor reads its sentinel"),
    RegisterField("motor_temp", "holding", 2, "float32", "CDAB", unit="°C", description="motor winding temperature"),
    RegisterField("vibration_rms", "holding", 4, "float32", "ABCD", unit="mm/s", description="spindle vibration RMS"),
    RegisterField("motor_current", "holding", 6, "float32", "CDAB", unit="A", description="spindle motor current"),
    RegisterField("pressure", "holding", 8, "float32", "ABCD", unit="bar", description="hydraulic pressure"),
    RegisterField("spindle_speed", "holding", 10, "uint16", unit="rpm", description="spindle speed"),
    RegisterField("load", "holding", 11, "uint16", unit="%", description="spindle load 0..100"),
    RegisterField("ambient_temp", "holding", 12, "int16", scale=0.1, unit="°C", description="hall temperature × 10"),
    RegisterField("status_word", "holding", 13, "uint16",
                  description="bit 0 running, 1 fault, 2 overtemp, 3 vibration, 4 sensor fault, 5 cutting, "
                  "6 door closed"),
    RegisterField("cycle_count", "holding", 14, "uint32", "ABCD",
                  description="finished cycles; wraps at 2^32; 0 after a PLC restart"),
    RegisterField("uptime", "holding", 16, "uint32", "CDAB", unit="s", description="seconds since the PLC booted"),
    RegisterField("alarm_code", "holding", 18, "uint16",
                  description="0 none, 101 overtemperature, 102 vibration, 103 sensor fault"),
    RegisterField("machine_number", "holding", 19, "uint16", description="the machine's number (1..N)"),
)
CORE_HOLDING = 20
PADDING_PERIOD = 50_000  # padding values stay below 65536 for any --registers up to 10000

INPUT: tuple[RegisterField, ...] = (
    RegisterField("coolant_temp", "input", 0, "int16", scale=0.1, unit="°C", description="coolant temperature × 10"),
    RegisterField("coolant_flow", "input", 1, "uint16", scale=0.1, unit="l/min", description="coolant flow × 10"),
)
COILS: tuple[RegisterField, ...] = (
    RegisterField("running", "coil", 0, "bool", description="the spindle runs production"),
    RegisterField("fault", "coil", 1, "bool", description="any alarm is active"),
    RegisterField("overtemp_alarm", "coil", 2, "bool", description="spindle temperature ≥ 80 °C"),
    RegisterField("vibration_alarm", "coil", 3, "bool", description="vibration RMS ≥ 7.1 mm/s"),
    RegisterField("sensor_fault", "coil", 4, "bool", description="the spindle temperature sensor has failed"),
)
DISCRETE_INPUTS: tuple[RegisterField, ...] = (
    RegisterField("door_closed", "discrete_input", 0, "bool", description="guard door closed (opens at load/unload)"),
    RegisterField("estop_ok", "discrete_input", 1, "bool", description="emergency stop circuit healthy"),
)

_FLOATS = struct.Struct(">5f")
_FLOAT_WORDS = struct.Struct(">10H")


def _int16(value: float) -> int:
    """Two's complement of a scaled value, clamped to the int16 range."""
    return max(-32768, min(32767, round(value))) & 0xFFFF


def _uint16(value: float) -> int:
    return max(0, min(65535, round(value)))


def encode_holding(r: Reading, padding: int = 0, tick: int = 0) -> list[int]:
    """The holding registers of one machine (core map plus ``padding`` benchmark registers)."""
    w = _FLOAT_WORDS.unpack(_FLOATS.pack(
        r.spindle_temp_c, r.motor_temp_c, r.vibration_rms_mm_s, r.motor_current_a, r.pressure_bar))
    count, uptime = r.cycle_count, r.uptime_s
    regs = [
        w[0], w[1],  # spindle_temp, ABCD
        w[3], w[2],  # motor_temp, CDAB
        w[4], w[5],  # vibration_rms, ABCD
        w[7], w[6],  # motor_current, CDAB
        w[8], w[9],  # pressure, ABCD
        _uint16(r.spindle_speed_rpm),
        _uint16(r.load_pct),
        _int16(r.ambient_temp_c * 10),
        r.status_word,
        count >> 16, count & 0xFFFF,  # cycle_count, high word first
        uptime & 0xFFFF, uptime >> 16,  # uptime, low word first
        r.alarm_code,
        r.machine,
    ]
    if padding:
        base = tick % PADDING_PERIOD
        regs.extend(range(base, base + padding))
    return regs


def encode_input(r: Reading) -> list[int]:
    return [_int16(r.coolant_temp_c * 10), _uint16(r.coolant_flow_l_min * 10)]


def encode_bits(bits: tuple[bool, ...]) -> int:
    """Pack bits into one 16-bit word, bit 0 first (how pymodbus stores 16 coils per register)."""
    return sum(1 << i for i, bit in enumerate(bits) if bit)


def coil_bits(r: Reading) -> tuple[bool, ...]:
    return (r.running, r.fault, r.overtemp_alarm, r.vibration_alarm, r.sensor_fault)


def discrete_bits(r: Reading) -> tuple[bool, ...]:
    return (r.door_closed, True)


# The PUR moulding station (twinsim.station): its own PLC, its own map.
STATION_HOLDING: tuple[RegisterField, ...] = (
    RegisterField("mould_temp", "holding", 0, "float32", "ABCD", unit="°C",
                  description="mould (cavity half) temperature, thermocouple in the wall"),
    RegisterField("lid_temp", "holding", 2, "float32", "ABCD", unit="°C", description="mould lid temperature"),
    RegisterField("mould_setpoint", "holding", 4, "float32", "ABCD", unit="°C",
                  description="recipe: mould temperature setpoint"),
    RegisterField("cavity_pressure", "holding", 6, "float32", "ABCD", unit="bar",
                  description="absolute gas pressure at the vent"),
    RegisterField("shot_weight", "holding", 8, "uint16", unit="g", description="recipe: shot weight"),
    RegisterField("cycle_time", "holding", 9, "uint16", unit="s", description="recipe: cycle time"),
    RegisterField("shot_count", "holding", 10, "uint32", "ABCD",
                  description="shots started; counts up at each shot start (wraps at 2^32)"),
    RegisterField("shot_elapsed", "holding", 12, "int16", scale=0.1, unit="s",
                  description="seconds since the last shot started × 10 (-0.1 before the first; "
                  "saturates at 3276.7)"),
    RegisterField("heater_output", "holding", 13, "uint16", unit="%", description="mould heater output 0..100"),
    RegisterField("station_number", "holding", 14, "uint16", description="the station's number (1..N)"),
)
STATION_CORE_HOLDING = 15
STATION_COILS: tuple[RegisterField, ...] = (
    RegisterField("shot_active", "coil", 0, "bool", description="the mould is closed: foam rising and curing"),
    RegisterField("mould_open", "coil", 1, "bool", description="the mould stands open (demoulding, loading)"),
)
_STATION_FLOATS = struct.Struct(">4f")
_STATION_WORDS = struct.Struct(">8H")


def encode_station_holding(r: StationReading) -> list[int]:
    """The holding registers of one moulding station."""
    w = _STATION_WORDS.unpack(_STATION_FLOATS.pack(
        r.mould_temp_c, r.lid_temp_c, r.mould_setpoint_c, r.cavity_pressure_bar))
    count = r.shot_count
    elapsed = -1 if r.shot_elapsed_s < 0 else r.shot_elapsed_s * 10
    return [*w, _uint16(r.shot_weight_g), _uint16(r.cycle_time_s), count >> 16, count & 0xFFFF,
            _int16(elapsed), _uint16(r.heater_output_pct), r.station]


def station_coil_bits(r: StationReading) -> tuple[bool, ...]:
    return (r.shot_active, r.mould_open)
