"""The simulated PUR moulding station: a heated mould, foam shots on a fixed cycle, a recipe, and its faults.

The station's PLC shows what a real one shows: the mould temperatures (the
cavity half and the lid), the recipe (mould setpoint, shot weight, cycle
time), a shot counter that counts up at each shot start, a ``shot_active``
flag (the mould is closed and the foam rises and cures), the seconds since
the last shot started, the heater output and the cavity pressure at the vent.

Dynamics (stepped in simulated time, seeded like the machines):

- the mould follows its setpoint as a first-order lag (τ 90 s; the heater's
  controller output is shown as a percentage); each shot's exotherm adds a
  small bump to the mould temperature (+1.5 K at its peak, 60 s after the
  shot start, then fading), and the lid runs 1.5 K cooler;
- shots start every ``cycle_s`` seconds (the recipe's cycle time), the first
  15 s after the start (time for an edge to connect); the mould opens for the last 20 % of the cycle;
- the cavity pressure is a stand-in for the gas the rising foam pushes out of
  the vent (not the PUR model): a generation pulse (peak 25 s after the shot)
  against a vent outflow proportional to the overpressure and the vent's
  efficiency. A clean vent peaks ~0.2 bar above ambient, a blocked one ~1 bar.

Faults (``twinsim.faults``): ``cold_mould`` (the heater fails: output 0 %,
the mould cools toward the hall temperature, τ 300 s, while the setpoint
still reads normal), ``cold_mould=setpoint`` (a wrong recipe: the setpoint
drops to 25 °C and the mould follows it), ``blocked_vent`` (the vent's
efficiency drops to 5 %: the cavity pressure rises about five times higher).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from twinsim.faults import FaultSchedule, FaultSpec

__all__ = ["AMBIENT_PRESSURE_BAR", "COLD_SETPOINT_C", "Station", "StationReading"]

AMBIENT_PRESSURE_BAR = 1.013
COLD_SETPOINT_C = 25.0
UINT32 = 2**32
FIRST_SHOT_S = 15.0
OPEN_FRACTION = 0.2  # the mould stands open for the last 20 % of the cycle
_MOULD_TAU_S = 90.0
_COOL_TAU_S = 300.0
_BUMP_K = 1.5
_BUMP_PEAK_S = 60.0
_LID_OFFSET_K = -1.5
_GAS_BAR = 1.6  # integral of the generation pulse, bar
_GAS_PEAK_S = 25.0
_VENT_RATE_1_S = 0.12
_BLOCKED_VENT = 0.05


@dataclass(frozen=True, slots=True)
class StationReading:
    """What the station's PLC exposes at one instant."""

    station: int
    mould_temp_c: float
    lid_temp_c: float
    mould_setpoint_c: float
    cavity_pressure_bar: float
    shot_weight_g: int
    cycle_time_s: int
    shot_count: int
    shot_elapsed_s: float  # -1 before the first shot
    heater_output_pct: int
    shot_active: bool
    mould_open: bool
    online: bool = True


class Station:
    """One moulding station with its PLC; ``name`` is ``station-<number>``."""

    def __init__(self, number: int, seed: int = 1, *, cycle_s: float = 120.0, setpoint_c: float = 45.0,
                 shot_weight_g: int = 300) -> None:
        if not 10.0 <= cycle_s <= 3600.0:
            raise ValueError(f"the station's cycle time must be 10..3600 s (got {cycle_s:g})")
        self.number = number
        self.name = f"station-{number}"
        self._rng = random.Random(seed * 100_019 + 7_000 + number)
        self.cycle_s = cycle_s
        self.setpoint_c = setpoint_c
        self.shot_weight_g = shot_weight_g
        self._ambient = self._rng.uniform(20.0, 24.0)
        self._faults = FaultSchedule(self.name)
        self.t = 0.0
        self._mould = setpoint_c - 0.3  # warmed up before the simulator starts
        self._overpressure = 0.0
        self._shots = 0
        self._shot_start: float | None = None
        self._reading = self._measure()

    @property
    def online(self) -> bool:
        return True

    def inject(self, fault: FaultSpec) -> None:
        self._faults.add(fault)

    def _active(self, kind: str) -> FaultSpec | None:
        return self._faults.active(kind, self.t)

    def reading(self) -> StationReading:
        return self._reading

    def _setpoint(self) -> float:
        cold = self._active("cold_mould")
        return COLD_SETPOINT_C if cold is not None and cold.mode == "setpoint" else self.setpoint_c

    def _heater_failed(self) -> bool:
        cold = self._active("cold_mould")
        return cold is not None and cold.mode != "setpoint"

    def step(self, dt: float) -> StationReading:
        if dt <= 0:
            return self._reading
        self.t = round(self.t + dt, 9)
        due = 0 if self.t < FIRST_SHOT_S else int((self.t - FIRST_SHOT_S) // self.cycle_s) + 1
        if due > self._shots:
            self._shots = due
            self._shot_start = FIRST_SHOT_S + (due - 1) * self.cycle_s
            self._overpressure = 0.0
        if self._heater_failed():
            target, tau = self._ambient, _COOL_TAU_S
        else:
            target, tau = self._setpoint(), _MOULD_TAU_S
        self._mould += (target - self._mould) * (1.0 - math.exp(-dt / tau))
        since = self._since()
        if since is not None and not self._open(since):
            gen = _GAS_BAR * since / _GAS_PEAK_S**2 * math.exp(-since / _GAS_PEAK_S)
            vent = 1.0 if self._active("blocked_vent") is None else _BLOCKED_VENT
            self._overpressure += (gen - _VENT_RATE_1_S * vent * self._overpressure) * dt
            self._overpressure = max(0.0, self._overpressure)
        else:
            self._overpressure = 0.0  # the mould is open
        self._reading = self._measure()
        return self._reading

    def _since(self) -> float | None:
        return None if self._shot_start is None else self.t - self._shot_start

    def _open(self, since: float) -> bool:
        return since >= self.cycle_s * (1.0 - OPEN_FRACTION)

    def _measure(self) -> StationReading:
        rng = self._rng
        noise = [rng.gauss(0.0, 1.0) for _ in range(3)]
        since = self._since()
        bump = 0.0
        if since is not None:
            x = since / _BUMP_PEAK_S
            bump = _BUMP_K * x * math.exp(1.0 - x)
        setpoint = self._setpoint()
        heater = 0 if self._heater_failed() else round(max(0.0, min(100.0, 35.0 + 12.0 * (setpoint - self._mould))))
        return StationReading(
            station=self.number,
            mould_temp_c=self._mould + bump + 0.05 * noise[0],
            lid_temp_c=self._mould + _LID_OFFSET_K + 0.6 * bump + 0.05 * noise[1],
            mould_setpoint_c=setpoint,
            cavity_pressure_bar=AMBIENT_PRESSURE_BAR + self._overpressure + 0.003 * noise[2],
            shot_weight_g=self.shot_weight_g,
            cycle_time_s=round(self.cycle_s),
            shot_count=self._shots % UINT32,
            shot_elapsed_s=-1.0 if since is None else since,
            heater_output_pct=heater,
            shot_active=since is not None and not self._open(since),
            mould_open=since is None or self._open(since),
        )

    def summary(self) -> str:
        r = self._reading
        flags = [name for name, on in (("COLD-MOULD", self._active("cold_mould") is not None),
                                       ("BLOCKED-VENT", self._active("blocked_vent") is not None)) if on]
        state = "shot" if r.shot_active else "open"
        return (f"{self.name:<11} {state} mould {r.mould_temp_c:5.1f} °C (set {r.mould_setpoint_c:4.1f})  "
                f"cavity {r.cavity_pressure_bar:4.2f} bar  heater {r.heater_output_pct:3d} %  shots {r.shot_count}"
                + (f"  [{' '.join(flags)}]" if flags else ""))
