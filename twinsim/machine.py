"""The simulated machine: a CNC spindle cell with plausible, seeded dynamics and injectable faults.

The model is stepped in simulated time (``step(dt)``); with the same seed and
the same steps it produces the same readings. What it models:

- a production cycle (load, unload, cutting) that sets the load; each finished
  cycle increments a uint32 counter that wraps like a PLC's;
- spindle and motor temperature as first-order lags toward a load-dependent
  equilibrium; coolant flow and coolant temperature;
- vibration RMS from load and bearing wear; current following load;
  hydraulic pressure with noise.

Faults (see ``twinsim.faults``): ``overheat`` (coolant flow fails, the
spindle passes the 80 °C alarm within 60 s), ``bearing_wear`` (vibration grows
past the 7.1 mm/s alarm within 120 s and stays), ``dropout`` (the spindle
temperature sensor freezes, reads a sentinel, or fails), ``plc_restart`` (the
PLC is offline for the downtime; counters and uptime restart at zero), ``drift`` (the
pressure sensor's calibration drifts: the reading gains 0.02 bar/s up to +2 bar,
while the process itself is unchanged, so nothing alarms; what a model's drift
check is for).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from twinsim.faults import FaultSchedule, FaultSpec

__all__ = [
    "ALARM_SPINDLE_TEMP_C",
    "ALARM_VIBRATION_MM_S",
    "SENTINEL_TEMP_C",
    "Machine",
    "Reading",
]

ALARM_SPINDLE_TEMP_C = 80.0
ALARM_VIBRATION_MM_S = 7.1  # ISO 10816 class II, boundary of zone D
SENTINEL_TEMP_C = -999.0
UINT32 = 2**32

_OVERHEAT_EXTRA_C = 70.0  # equilibrium rise without coolant
_OVERHEAT_TAU_S = 30.0
_WEAR_RATE_PER_S = 1.0 / 120.0
_WEAR_VIBRATION_MM_S = 9.0
_DRIFT_BAR_PER_S = 0.02
_DRIFT_MAX_BAR = 2.0

# Alarm codes in the order of their priority (the first active one is reported).
ALARM_OVERTEMP = 101
ALARM_VIBRATION = 102
ALARM_SENSOR = 103


@dataclass(frozen=True, slots=True)
class Reading:
    """What the machine's PLC exposes at one instant."""

    machine: int
    spindle_temp_c: float
    motor_temp_c: float
    coolant_temp_c: float
    coolant_flow_l_min: float
    ambient_temp_c: float
    vibration_rms_mm_s: float
    motor_current_a: float
    pressure_bar: float
    spindle_speed_rpm: int
    load_pct: int
    cycle_count: int
    uptime_s: int
    running: bool
    cutting: bool
    door_closed: bool
    overtemp_alarm: bool
    vibration_alarm: bool
    sensor_fault: bool
    spindle_temp_status: str  # "ok", "frozen", "sentinel" or "failed"
    online: bool

    @property
    def fault(self) -> bool:
        return self.overtemp_alarm or self.vibration_alarm or self.sensor_fault

    @property
    def alarm_code(self) -> int:
        if self.overtemp_alarm:
            return ALARM_OVERTEMP
        if self.vibration_alarm:
            return ALARM_VIBRATION
        if self.sensor_fault:
            return ALARM_SENSOR
        return 0

    @property
    def status_word(self) -> int:
        """Bit 0 running, 1 fault, 2 overtemp, 3 vibration, 4 sensor fault, 5 cutting, 6 door closed."""
        bits = (self.running, self.fault, self.overtemp_alarm, self.vibration_alarm,
                self.sensor_fault, self.cutting, self.door_closed)
        return sum(1 << i for i, bit in enumerate(bits) if bit)


class Machine:
    """One machine with its PLC. ``number`` is 1-based; ``name`` is ``machine-<number>``."""

    def __init__(self, number: int, seed: int = 1, *, cycle_count: int = 0) -> None:
        self.number = number
        self.name = f"machine-{number}"
        self._rng = random.Random(seed * 100_003 + number)
        rng = self._rng
        self.cycle_time_s = rng.uniform(6.0, 12.0)
        self.nominal_rpm = rng.choice((2400, 3000, 3600, 4800))
        self._ambient = rng.uniform(20.0, 24.0)
        self._heat_gain = rng.uniform(30.0, 40.0)  # °C above ambient at full load
        self._base_vibration = rng.uniform(1.0, 1.8)
        self._nominal_pressure = rng.uniform(5.5, 6.5)
        self._faults = FaultSchedule(self.name)
        self.t = 0.0
        self._phase = rng.random()
        self._bias = 0.0
        self._wear = 0.0
        self._cycle_count = cycle_count % UINT32
        self._uptime = 0.0
        self._online = True
        self._frozen_temp: float | None = None
        warm = self._ambient + self._heat_gain * 0.55
        self._spindle_temp = warm
        self._motor_temp = self._ambient + self._heat_gain * 0.45
        self._coolant_temp = self._ambient + 3.0
        self._reading = self._measure(0.0, 0.0)

    # --- faults -------------------------------------------------------------------

    def inject(self, fault: FaultSpec) -> None:
        """Schedule a fault for this machine (times are simulated seconds since start)."""
        self._faults.add(fault)

    def _active(self, kind: str) -> FaultSpec | None:
        return self._faults.active(kind, self.t)

    @property
    def online(self) -> bool:
        """False while the PLC restarts: its server should not answer."""
        return self._online

    def reading(self) -> Reading:
        return self._reading

    # --- dynamics -----------------------------------------------------------------

    def step(self, dt: float) -> Reading:
        """Advance the model by ``dt`` simulated seconds and return the new reading."""
        if dt <= 0:
            return self._reading
        self.t = round(self.t + dt, 9)  # no float drift: 600 steps of 0.1 s are exactly 60 s
        restarting = self._active("plc_restart") is not None
        if restarting and self._online:
            self._online = False  # outputs drop, counters are not retentive
            self._cycle_count = 0
            self._uptime = 0.0
        elif not restarting and not self._online:
            self._online = True
            self._phase = 0.0
        running = self._online
        if running:
            self._uptime += dt
        rng = self._rng
        # Mean-reverting random walk: the material and tool change the load a little.
        self._bias += -self._bias * dt / 30.0 + rng.gauss(0.0, 0.02) * math.sqrt(dt)
        load = 0.0
        if running:
            self._phase += dt / self.cycle_time_s
            while self._phase >= 1.0:
                self._phase -= 1.0
                self._cycle_count = (self._cycle_count + 1) % UINT32
            cutting = 0.1 <= self._phase < 0.85
            load = 0.75 + 0.08 * math.sin(2 * math.pi * self._phase * 3) if cutting else 0.15
            load = min(1.0, max(0.0, load + self._bias))
        if self._active("bearing_wear") is not None:
            self._wear = min(1.0, self._wear + _WEAR_RATE_PER_S * dt)
        overheat = self._active("overheat") is not None
        spindle_eq = self._ambient + self._heat_gain * load + 6.0 * self._wear
        tau = 90.0
        if overheat:
            spindle_eq += _OVERHEAT_EXTRA_C
            tau = _OVERHEAT_TAU_S
        self._spindle_temp += (spindle_eq - self._spindle_temp) * (1.0 - math.exp(-dt / tau))
        motor_eq = self._ambient + 0.8 * self._heat_gain * load + (20.0 if overheat else 0.0)
        self._motor_temp += (motor_eq - self._motor_temp) * (1.0 - math.exp(-dt / 150.0))
        coolant_eq = self._ambient + 0.3 * (self._spindle_temp - self._ambient)
        self._coolant_temp += (coolant_eq - self._coolant_temp) * (1.0 - math.exp(-dt / 45.0))
        self._reading = self._measure(load, dt)
        return self._reading

    def _measure(self, load: float, dt: float) -> Reading:
        """Sensor values with noise; the noise draws happen in a fixed order so seeds reproduce."""
        rng = self._rng
        running = self._online
        noise = [rng.gauss(0.0, 1.0) for _ in range(7)]
        overheat = self._active("overheat") is not None
        spindle = self._spindle_temp + 0.05 * noise[0]
        status = "ok"
        dropout = self._active("dropout")
        if dropout is not None:
            status = {"sentinel": "sentinel", "freeze": "frozen", "exception": "failed"}[dropout.mode or "sentinel"]
            if status == "frozen":
                if self._frozen_temp is None:
                    self._frozen_temp = self._reading.spindle_temp_c if dt else spindle
                spindle = self._frozen_temp
            elif status == "sentinel":
                spindle = SENTINEL_TEMP_C
        else:
            self._frozen_temp = None
        vibration = self._base_vibration * (0.5 + 0.7 * load) if running else 0.1 * self._base_vibration
        vibration += _WEAR_VIBRATION_MM_S * self._wear * (1.0 if running else 0.1)
        vibration = max(0.0, vibration + 0.05 * noise[1])
        current = (2.0 + 20.0 * load + 2.0 * self._wear) if running else 0.3
        current = max(0.0, current + 0.15 * noise[2])
        if running:
            pressure = self._nominal_pressure - 0.4 * load + 0.1 * math.sin(2 * math.pi * self.t / 17.0)
        else:
            pressure = 0.3
        pressure = max(0.0, pressure + 0.03 * noise[3])
        drift = self._active("drift")
        if drift is not None:
            pressure += min(_DRIFT_MAX_BAR, _DRIFT_BAR_PER_S * (self.t - drift.start))
        flow = (2.0 if overheat else 12.0) if running else 0.0
        flow = max(0.0, flow + 0.1 * noise[4])
        cutting = running and 0.1 <= self._phase < 0.85
        return Reading(
            machine=self.number,
            spindle_temp_c=spindle,
            motor_temp_c=self._motor_temp + 0.05 * noise[5],
            coolant_temp_c=self._coolant_temp + 0.05 * noise[6],
            coolant_flow_l_min=flow,
            ambient_temp_c=self._ambient,
            vibration_rms_mm_s=vibration,
            motor_current_a=current,
            pressure_bar=pressure,
            spindle_speed_rpm=round(self.nominal_rpm * (0.2 + 0.8 * load)) if running else 0,
            load_pct=round(100 * load),
            cycle_count=self._cycle_count,
            uptime_s=int(self._uptime) % UINT32,
            running=running,
            cutting=cutting,
            door_closed=not running or self._phase >= 0.05,
            overtemp_alarm=status in ("ok", "frozen") and spindle >= ALARM_SPINDLE_TEMP_C,
            vibration_alarm=vibration >= ALARM_VIBRATION_MM_S,
            sensor_fault=status in ("sentinel", "failed"),
            spindle_temp_status=status,
            online=self._online,
        )

    def summary(self) -> str:
        """One line for the console: the values an operator looks at first."""
        r = self._reading
        state = "run " if r.running else "DOWN"
        flags = [name for name, on in (("OVERTEMP", r.overtemp_alarm), ("VIBRATION", r.vibration_alarm),
                                       (f"SENSOR:{r.spindle_temp_status}", r.spindle_temp_status != "ok")) if on]
        return (
            f"{self.name:<11} {state} spindle {r.spindle_temp_c:6.1f} °C  motor {r.motor_temp_c:5.1f} °C  "
            f"vib {r.vibration_rms_mm_s:5.2f} mm/s  {r.motor_current_a:5.1f} A  {r.pressure_bar:4.2f} bar  "
            f"{r.spindle_speed_rpm:5d} rpm  cycles {r.cycle_count}" + (f"  [{' '.join(flags)}]" if flags else "")
        )
