"""A binding's state as it is stored: its window and run series packed as binary, not as JSON numbers.

The state is written with every step (``process_bindings.state``) and read
with every list of bindings. A window may hold ``process.max_state_points``
points for each of up to 32 names; as JSON numbers that was 15 MB of text
per step, about 200 ms to write and 75 ms to read
(``bench/bench_vsensor_state.py``). Packed, a series is
``{"t": ..., "v": ...}``: the values as little-endian float64 in base64, the
times as their differences (int64 µs for a window, whose readings are mostly
evenly spaced, so they compress to almost nothing) or as float64 seconds
(a run's), zlib-compressed. ``unpack`` also takes the older form (two lists),
so a state stored before reads as it did.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

__all__ = ["pack", "unpack"]

Series = list[list[float]]  # [times, values], as the step function works on them


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pack_series(s: Series, int_times: bool) -> dict[str, Any]:
    if int_times:
        times = np.diff(np.asarray(s[0], dtype="<i8"), prepend=np.int64(0)).astype("<i8").tobytes()
    else:
        times = np.asarray(s[0], dtype="<f8").tobytes()
    return {"t": _b64(zlib.compress(times, 1)), "v": _b64(np.asarray(s[1], dtype="<f8").tobytes()),
            "int": int_times}


def _unpack_series(s: Any) -> Series:
    if isinstance(s, list):  # the older form: [times, values] as JSON numbers
        return [list(s[0]), list(s[1])]
    raw = zlib.decompress(base64.b64decode(s["t"]))
    times = np.cumsum(np.frombuffer(raw, dtype="<i8")).tolist() if s["int"] else np.frombuffer(raw, "<f8").tolist()
    return [times, np.frombuffer(base64.b64decode(s["v"]), dtype="<f8").tolist()]


def unpack(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its series as lists, ready for a step (a copy: ``state`` itself is left as it is)."""
    out = {**state}
    if "win" in out:
        out["win"] = {n: _unpack_series(s) for n, s in out["win"].items()}
    run = out.get("run")
    if run:
        out["run"] = {**run, "series": {n: _unpack_series(s) for n, s in run["series"].items()}}
    return out


def pack(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its series packed, as it is stored (plain JSON still)."""
    out = {**state}
    if "win" in out:
        out["win"] = {n: _pack_series(s, True) for n, s in out["win"].items()}
    run = out.get("run")
    if run:
        out["run"] = {**run, "series": {n: _pack_series(s, False) for n, s in run["series"].items()}}
    return out
