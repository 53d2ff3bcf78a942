"""The live summary of `make run`: what the cloud has received, one line per device, each line at most
``WIDTH`` columns (the demo's "demo  | " prefix included).

Built from the cloud's public API only: ``/api/v1/edges`` (frames stored, and
the queue and source states the edge reported with its last batch) and each
device's ``/api/v1/twin/<device>/state``. The simulator's machines get a
table row with their key values; a moulding station its mould temperature,
shot count and the PUR model's live predicted demould time (``pur.t_demold``,
with its margin to the cycle time); a CNC machine read over MTConnect its
execution state, program and part count; any other device (one publishing
over MQTT) its first values by name.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["WIDTH", "summary_lines"]

WIDTH = 100
PREFIX = len("demo  | ")
NAME_MAX = 18
# (field, column title, column width, decimals): the values an operator looks at first; the titles get
# the units of twinsim's register map
COLUMNS = (
    ("spindle_temp", "spindle", 10, 1),
    ("vibration_rms", "vib", 8, 2),
    ("motor_current", "current", 9, 1),
    ("spindle_speed", "", 5, 0),
    ("cycle_count", "cycles", 8, 0),
)
STATE_WIDTH = 9
ALARMS = {101: "OVERTEMP", 102: "VIBRATION", 103: "SENSOR"}


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(seconds: float) -> str:
    if seconds < 100:
        return f"{max(seconds, 0.0):.1f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 6000 else f"{seconds / 3600:.0f} h ago"


def _number(value: object, decimals: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else _clip(str(value), 8)
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{decimals}f}" if decimals == 0 else f"{value:.{decimals}f}"


def _state(values: dict[str, Any]) -> str:
    alarm = values.get("alarm_code")
    if isinstance(alarm, int | float) and not isinstance(alarm, bool) and alarm:
        return ALARMS.get(int(alarm), f"ALARM {alarm:g}")
    running = values.get("running")
    return "" if not isinstance(running, bool) else "run" if running else "idle"


def _values(state: dict[str, Any]) -> dict[str, Any]:
    values = state.get("values")
    if not isinstance(values, dict):
        return {}
    return {k: v.get("value") for k, v in values.items() if isinstance(v, dict)}


def header_line(edge: dict[str, Any], edge_id: str, clock: str) -> str:
    """The cloud's frame count, and the queue and sources the edge reported with its last batch."""
    if not edge.get("last_seen"):
        return f"{clock} the cloud has no data from {edge_id} yet"
    sources = edge.get("sources") or {}
    connected = sum(1 for s in sources.values() if s == "connected")
    text = (f"{clock} cloud: {edge.get('frames_stored') or 0:,} frames from {edge_id}; edge: queue "
            f"{edge.get('queue_depth') or 0:,}, {connected}/{len(sources)} sources connected")
    return _clip(text, WIDTH - PREFIX)


def _station(values: dict[str, Any]) -> str:
    """A moulding station: mould temperature, shots, and the PUR model's predicted demould time."""
    text = (f"mould {_number(values.get('mould_temp'), 1)} °C  shot {_number(values.get('shot_count'), 0)}  "
            f"demould {_number(values.get('pur.t_demold'), 1)} s")
    margin = values.get("pur.margin_s")
    return text if margin is None else f"{text}  margin {_number(margin, 1)} s"


def _cnc_keys(values: dict[str, Any]) -> dict[str, str]:
    """The keys of a CNC machine's execution, program and part count (MTConnect item ids such as
    ``Lpexecution``), found by their endings; empty when the device has no execution state."""
    found: dict[str, str] = {}
    for key in sorted(values):
        low = key.lower()
        for what in ("execution", "program", "partcount"):
            if low.endswith(what) and what not in found:
                found[what] = key
    return found if "execution" in found else {}


def _cnc(values: dict[str, Any], keys: dict[str, str]) -> str:
    text = f"program {values.get(keys.get('program', ''), '-')}"
    parts = values.get(keys.get("partcount", ""))
    return text if parts is None else f"{text}  parts {_number(parts, 0)}"


def device_line(state: dict[str, Any], at: float, name_width: int) -> str:
    """One device: name, state, key values (units in the column titles) and the age of its newest frame."""
    values = _values(state)
    name = _clip(str(state.get("device_id", "?")), name_width)
    ts = state.get("ts")
    age = _age(at - ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else "no data yet"
    if "mould_temp" in values:
        shot = values.get("shot_active")
        cells = [f"{name:<{name_width}}", f"{('shot' if shot else 'open'):<{STATE_WIDTH}}"]
        room = WIDTH - PREFIX - len("  ".join([*cells, age])) - 2
        return "  ".join([*cells, f"{_clip(_station(values), room):<{room}}", age])
    if cnc := _cnc_keys(values):
        execution = str(values.get(cnc["execution"], "-")).lower()
        cells = [f"{name:<{name_width}}", f"{_clip(execution, STATE_WIDTH):<{STATE_WIDTH}}"]
        room = WIDTH - PREFIX - len("  ".join([*cells, age])) - 2
        return "  ".join([*cells, f"{_clip(_cnc(values, cnc), room):<{room}}", age])
    cells = [f"{name:<{name_width}}", f"{_state(values):<{STATE_WIDTH}}"]
    if any(field in values for field, *_ in COLUMNS):
        cells += [f"{_number(values.get(field), decimals):>{width}}" for field, _, width, decimals in COLUMNS]
        return _clip("  ".join([*cells, age]), WIDTH - PREFIX)
    # Not one of the simulator's machines: its values by name, as many as fit before the age.
    room = WIDTH - PREFIX - len("  ".join([*cells, age])) - 2
    shown = "  ".join(f"{k} {_number(v, 2)}" for k, v in sorted(values.items()) if k not in ("running",))
    return "  ".join([*cells, f"{_clip(shown, room):<{room}}", age])


@functools.cache
def _units() -> dict[str, str]:
    from twinsim.registers import HOLDING, INPUT  # imports the simulator's servers too: only when needed

    return {f.name: f.unit for f in (*HOLDING, *INPUT) if f.unit}


def title_line(name_width: int) -> str:
    cells = [f"{'device':<{name_width}}", f"{'state':<{STATE_WIDTH}}"]
    for field, title, width, _ in COLUMNS:
        cells.append(f"{title} {_units().get(field, '')}".strip().rjust(width))
    return "  ".join([*cells, "newest"])


def summary_lines(edge: dict[str, Any], edge_id: str, states: Sequence[dict[str, Any]],
                  at: float | None = None) -> list[str]:
    """The header, the column titles and one line per device, in the order given."""
    at = time.time() if at is None else at
    clock = time.strftime("%H:%M:%S", time.localtime(at))
    lines = [header_line(edge, edge_id, clock)]
    if states:
        name_width = max(6, min(NAME_MAX, max(len(str(s.get("device_id", "?"))) for s in states)))
        lines.append(title_line(name_width))
        lines += [device_line(state, at, name_width) for state in states]
    return lines
