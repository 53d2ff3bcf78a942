"""Fault injection specs for the plant simulator: parsing ``machine-2:overheat@30s`` into a FaultSpec.

Grammar (times are relative to the simulator start)::

    <target>:<fault>[=<mode>]@<start>[+<duration>]

    machine-2:overheat@30s              coolant failure from t=30 s on
    machine-1:bearing_wear@0s           bearing wear grows from the start
    machine-3:dropout=exception@1m+20s  spindle temperature sensor fails for 20 s
    machine-1:plc_restart@45s+5s        the PLC is gone for 5 s, then boots again
    machine-2:drift@1m                  the pressure sensor's calibration drifts upward
    opcua:plc_restart@2m+5s             the OPC-UA server stops for 5 s
    station-1:cold_mould@1m             the moulding station's mould heater fails
    station-1:cold_mould=setpoint@1m    a wrong recipe: the mould setpoint drops to 25 °C
    station-1:blocked_vent@0s           the station's vent clogs (5 % of its flow)

A fault without a duration lasts until the simulator stops, except
``plc_restart`` whose duration is the downtime (5 s unless given).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, cast

from shared.configbase import parse_duration

__all__ = [
    "COLD_MOULD_MODES",
    "DROPOUT_MODES",
    "FAULT_KINDS",
    "FaultKind",
    "FaultSchedule",
    "FaultSpec",
    "FaultSpecError",
    "parse_fault_spec",
]

FaultKind = Literal["overheat", "bearing_wear", "dropout", "plc_restart", "drift", "cold_mould", "blocked_vent"]
MACHINE_FAULTS: tuple[str, ...] = ("overheat", "bearing_wear", "dropout", "plc_restart", "drift")
STATION_FAULTS: tuple[str, ...] = ("cold_mould", "blocked_vent")
FAULT_KINDS: tuple[str, ...] = MACHINE_FAULTS + STATION_FAULTS
DROPOUT_MODES: tuple[str, ...] = ("sentinel", "freeze", "exception")
COLD_MOULD_MODES: tuple[str, ...] = ("heater", "setpoint")
DEFAULT_RESTART_DOWNTIME = 5.0
MAX_FAULT_TIME = 30 * 24 * 3600.0  # a month of simulated time is plenty

_ALIASES = {
    "overheat": "overheat",
    "overheating": "overheat",
    "bearing_wear": "bearing_wear",
    "bearing": "bearing_wear",
    "dropout": "dropout",
    "sensor_dropout": "dropout",
    "plc_restart": "plc_restart",
    "restart": "plc_restart",
    "drift": "drift",
    "sensor_drift": "drift",
    "cold_mould": "cold_mould",
    "cold_mold": "cold_mould",
    "blocked_vent": "blocked_vent",
}
_SPEC_RE = re.compile(
    r"^(?P<target>[^:@+=\s]+):(?P<kind>[a-z_]+)(?:=(?P<mode>[a-z_]+))?@(?P<start>[^+]+)(?:\+(?P<duration>.+))?$"
)
_MACHINE_RE = re.compile(r"^machine-(?P<number>[0-9]{1,4})$")
_STATION_RE = re.compile(r"^station-(?P<number>[0-9]{1,2})$")
_EXAMPLE = "e.g. 'machine-2:overheat@30s' or 'machine-1:dropout=exception@1m+20s'"


class FaultSpecError(ValueError):
    """A ``--fault`` value that cannot be understood; the message says what was expected."""


@dataclass(frozen=True)
class FaultSpec:
    """One scheduled fault. ``machine`` is the 1-based machine number, or None for the OPC-UA server or a
    moulding station (``station``, 1-based)."""

    machine: int | None
    kind: FaultKind
    start: float
    duration: float | None = None
    mode: str | None = None
    station: int | None = None

    @property
    def end(self) -> float:
        return math.inf if self.duration is None else self.start + self.duration

    @property
    def target(self) -> str:
        if self.station is not None:
            return f"station-{self.station}"
        return "opcua" if self.machine is None else f"machine-{self.machine}"

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def __str__(self) -> str:
        mode = f"={self.mode}" if self.mode else ""
        duration = f"+{self.duration:g}s" if self.duration is not None else ""
        return f"{self.target}:{self.kind}{mode}@{self.start:g}s{duration}"


class FaultSchedule:
    """The faults scheduled for one simulated machine or station, ``name`` being its fault target."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._faults: list[FaultSpec] = []

    def add(self, fault: FaultSpec) -> None:
        if fault.target != self.name:
            raise ValueError(f"fault {fault} is not for {self.name}")
        self._faults.append(fault)

    def active(self, kind: str, t: float) -> FaultSpec | None:
        """The first fault of this kind active at simulated time ``t``, if any."""
        for fault in self._faults:
            if fault.kind == kind and fault.active(t):
                return fault
        return None


def _time(spec: str, what: str, text: str) -> float:
    try:
        value = float(parse_duration(text.strip()))
    except ValueError:
        raise FaultSpecError(
            f"fault {spec!r}: the {what} {text!r} is not a duration such as '30s', '500ms' or '2m'"
        ) from None
    if value > MAX_FAULT_TIME:
        raise FaultSpecError(f"fault {spec!r}: the {what} {text!r} is longer than 30 days")
    return value


def parse_fault_spec(spec: str, machines: int | None = None, stations: int | None = None) -> FaultSpec:
    """Parse one ``--fault`` value; ``machines`` and ``stations`` (when given) bound the numbers."""
    match = _SPEC_RE.match(spec.strip())
    if not match:
        raise FaultSpecError(f"fault {spec!r} is not <machine>:<fault>@<start>[+<duration>]; {_EXAMPLE}")
    target, kind_text = match.group("target"), match.group("kind")
    kind = _ALIASES.get(kind_text)
    if kind is None:
        raise FaultSpecError(f"fault {spec!r}: unknown fault {kind_text!r}; expected one of {', '.join(FAULT_KINDS)}")
    machine: int | None
    station: int | None = None
    station_match = _STATION_RE.match(target)
    if station_match:
        if kind not in STATION_FAULTS:
            raise FaultSpecError(f"fault {spec!r}: a moulding station takes {' or '.join(STATION_FAULTS)} "
                                 f"(got {kind_text!r})")
        station = int(station_match.group("number"))
        if station < 1 or (stations is not None and station > stations):
            limit = f"1..{stations}" if stations else "1 or more (run with --stations N)"
            raise FaultSpecError(f"fault {spec!r}: there is no {target}; stations are numbered {limit}")
        machine = None
    elif kind in STATION_FAULTS:
        raise FaultSpecError(f"fault {spec!r}: {kind} is a moulding station fault; the target is 'station-<n>'")
    elif target == "opcua":
        if kind != "plc_restart":
            raise FaultSpecError(f"fault {spec!r}: the opcua target only supports plc_restart")
        machine = None
    else:
        target_match = _MACHINE_RE.match(target)
        if not target_match:
            raise FaultSpecError(f"fault {spec!r}: unknown target {target!r}; expected 'machine-<n>', "
                                 "'station-<n>' or 'opcua'")
        machine = int(target_match.group("number"))
        if machine < 1 or (machines is not None and machine > machines):
            limit = f"1..{machines}" if machines is not None else "1 or more"
            raise FaultSpecError(f"fault {spec!r}: there is no {target}; machines are numbered {limit}")
    mode = match.group("mode")
    if kind == "dropout":
        mode = mode or "sentinel"
        if mode not in DROPOUT_MODES:
            raise FaultSpecError(
                f"fault {spec!r}: unknown dropout mode {mode!r}; expected one of {', '.join(DROPOUT_MODES)}"
            )
    elif kind == "cold_mould":
        mode = mode or "heater"
        if mode not in COLD_MOULD_MODES:
            raise FaultSpecError(
                f"fault {spec!r}: unknown cold_mould mode {mode!r}; expected one of {', '.join(COLD_MOULD_MODES)}"
            )
    elif mode is not None:
        raise FaultSpecError(f"fault {spec!r}: only dropout and cold_mould take a mode (got {mode!r})")
    start = _time(spec, "start", match.group("start"))
    duration_text = match.group("duration")
    duration = _time(spec, "duration", duration_text) if duration_text is not None else None
    if kind == "plc_restart":
        duration = DEFAULT_RESTART_DOWNTIME if duration is None else duration
        if duration <= 0:
            raise FaultSpecError(f"fault {spec!r}: a plc_restart needs a downtime above 0 s")
    return FaultSpec(machine=machine, kind=cast(FaultKind, kind), start=start, duration=duration, mode=mode,
                     station=station)
