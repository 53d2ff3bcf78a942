"""The virtual-sensor engine: one step function for the live path and for replays, and the live hook.

``step(compiled, state, readings, limits)`` takes a binding's state (plain
JSON) and readings in time order and returns the new state and the derived
points. Live, the engine reads a device's readings newer than each binding's
watermark from storage and stores the points and the new state in one
transaction; a replay (``twincloud process test``) feeds the stored readings of
a range through the same function and stores nothing, from the state ``seed``
gives (each input's newest value before the look-back, held as a live run holds
it). So a replay over a range equals the live run (exactly, for the same
readings).

Rules:
- Late and out-of-order readings: a binding's watermark is the newest reading
  it has processed. Readings are processed in time order; one dated at or
  before the watermark when it arrives is stored as telemetry but never
  re-opens what is derived already (derived points are written once). It
  counts in the binding's ``late`` figure; a replay of the range includes it.
- No self-triggering: a derived point is dated at or before its input
  watermark (a tumbling window's at the window's end), so it is never a new
  reading of its own binding, and no chain of bindings runs forever. Feedback
  is the guard's business: a binding never reads its own outputs nor what they
  feed through other bindings (``cloud.process.runner.never_read``). It
  matters in a loop a -> b -> a where b has an input of its own: b's points
  dated at that input's readings are newer than a's watermark, and would give
  an a computed from its own earlier value. A loop is refused when defined;
  one stored anyway is cut once, at the edge back into the binding run first.
- Limits: ``process.max_bindings_per_device`` and ``process.max_state_points``
  (window points, or a run's input points) with a clear refusal or a flagged
  point past them.
- Several workers or replicas: the worker that stored a batch catches up the
  bindings of its devices. Each write is a compare-and-set on the binding's
  revision, so when two workers race for one binding one stores and the other
  reloads and finds nothing left to do.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloud.process.bindings import Compiled, FormulaSpec, ModelSpec
from cloud.process.formulas import Windowed
from cloud.process.model import RunInputs, RunOutputs
from cloud.process.state import pack, unpack

__all__ = ["DerivedPoint", "Limits", "Reading", "seed", "step"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reading:
    ts: int  # µs
    sensor: str
    value: float


@dataclass(frozen=True, slots=True)
class DerivedPoint:
    """One derived value (``value`` None: flagged, ``flag`` says why) at ``ts`` µs, from inputs up to ``watermark``."""

    field: str
    ts: int
    value: float | None
    flag: str
    watermark: int


@dataclass(frozen=True, slots=True)
class Limits:
    max_state_points: int = 20_000


def _groups(readings: Sequence[Reading]) -> Iterable[tuple[int, dict[str, float]]]:
    """Readings grouped by timestamp, in time order."""
    current: dict[str, float] = {}
    ts: int | None = None
    for r in sorted(readings, key=lambda r: r.ts):
        if ts is not None and r.ts != ts:
            yield ts, current
            current = {}
        ts = r.ts
        current[r.sensor] = r.value
    if ts is not None:
        yield ts, current


def step(c: Compiled, state: dict[str, Any], readings: Sequence[Reading], limits: Limits,
         emit_from: int = -1) -> tuple[dict[str, Any], list[DerivedPoint]]:
    """Advance a binding over ``readings`` (newer than its watermark); the new state and the points derived.

    A model's run is not solved at readings before ``emit_from`` (a replay's look-back, whose points are not
    wanted): its state advances all the same."""
    state = unpack(state)
    points: list[DerivedPoint] = []
    for ts, values in _groups(readings):
        if ts <= state.get("watermark", -1):
            state["late"] = state.get("late", 0) + 1
            continue
        if isinstance(c.spec.spec, FormulaSpec):
            points += _formula_step(c, c.spec.spec, state, ts, values, limits)
        else:
            points += _model_step(c, c.spec.spec, state, ts, values, limits, ts >= emit_from)
        state["watermark"] = ts
    return pack(state), points


def seed(c: Compiled, readings: Sequence[Reading]) -> dict[str, Any]:
    """A replay's state before its look-back, from each input's newest reading before it: the value an input holds
    until it is read again (a formula without a window, a run's inputs), and the start sensor's value (a shot
    flag held high is no rising edge). It opens no run and no window, and derives nothing."""
    spec = c.spec.spec
    last: dict[str, list[float]] = {}
    state: dict[str, Any] = {}
    for ts, values in _groups(readings):
        for name, sensor in c.names.items():
            if sensor in values:
                last[name] = [ts, _to(c, name, values[sensor])]
        if isinstance(spec, ModelSpec) and spec.start_on in values:
            state["start_value"] = values[spec.start_on]
        state["watermark"] = ts
    if last and not (isinstance(spec, FormulaSpec) and spec.window is not None):
        state["last"] = last
    return state


def _to(c: Compiled, name: str, value: float) -> float:
    return float(c.convert[name](np.asarray([value], dtype=float))[0])


def _formula_step(c: Compiled, f: FormulaSpec, state: dict[str, Any], ts: int, values: dict[str, float],
                  limits: Limits) -> list[DerivedPoint]:
    assert c.formula is not None
    last: dict[str, list[float]] = state.setdefault("last", {})
    out = c.outputs["value"]
    fired = c.all_sensors or any(s in c.triggers for s in values)
    if f.window is None:
        for name, sensor in c.names.items():
            if sensor in values:
                last[name] = [ts, _to(c, name, values[sensor])]
        if not fired:
            return []
        value, flag = c.formula.evaluate({n: v for n, (_, v) in last.items()})
        return [DerivedPoint(out, ts, value, flag, ts)]
    width = round(f.window.seconds * 1e6)
    win: dict[str, list[list[float]]] = state.setdefault("win", {n: [[], []] for n in c.names})
    points: list[DerivedPoint] = []
    if f.window.kind == "tumbling":
        bucket = ts - ts % width
        open_at = state.get("bucket")
        if open_at is not None and bucket > open_at:  # a reading of a later window closes this one
            points.append(_window_point(c, out, win, open_at + width, ts))
        if open_at is None or bucket > open_at:
            state["bucket"] = bucket
            for series in win.values():
                series[0].clear()
                series[1].clear()
    _add_window(c, win, ts, values, limits)
    if f.window.kind == "rolling":
        for series in win.values():
            cut = next((k for k, t in enumerate(series[0]) if t > ts - width), len(series[0]))
            del series[0][:cut], series[1][:cut]
        if fired:
            points.append(_window_point(c, out, win, ts, ts))
    return points


def _add_window(c: Compiled, win: dict[str, list[list[float]]], ts: int, values: dict[str, float],
                limits: Limits) -> None:
    for name, sensor in c.names.items():
        if sensor in values:
            series = win.setdefault(name, [[], []])
            series[0].append(ts)
            series[1].append(_to(c, name, values[sensor]))
            if len(series[0]) > limits.max_state_points:  # the oldest points go; the point says so
                del series[0][0], series[1][0]
                c.extra["truncated"] = True


def _window_point(c: Compiled, out: str, win: dict[str, list[list[float]]], at: int, wm: int) -> DerivedPoint:
    assert c.formula is not None
    names = {n: Windowed([t / 1e6 for t in s[0]], s[1]) for n, s in win.items() if s[0]}
    value, flag = c.formula.evaluate(dict(names))
    if c.extra.pop("truncated", False) and not flag:
        value, flag = None, "the window holds more points than process.max_state_points"
    return DerivedPoint(out, at, value, flag, wm)


def _opens(m: ModelSpec, prev: float | None, value: float) -> bool:
    if m.start_when == "change":
        return prev is not None and value != prev
    return (prev is None or prev <= 0) and value > 0


def _model_step(c: Compiled, m: ModelSpec, state: dict[str, Any], ts: int, values: dict[str, float],
                limits: Limits, solve: bool) -> list[DerivedPoint]:
    last: dict[str, list[float]] = state.setdefault("last", {})
    run: dict[str, Any] | None = state.get("run")
    if m.start_on in values:
        prev = state.get("start_value")
        state["start_value"] = values[m.start_on]
        if _opens(m, prev, values[m.start_on]):
            # Inputs hold their newest value from before the run until they are read again.
            run = state["run"] = {"start": ts, "series": {n: [[0.0], [v]] for n, (_, v) in last.items()}}
    for name, sensor in c.names.items():
        if sensor in values:
            v = _to(c, name, values[sensor])
            last[name] = [ts, v]
            if run is not None:
                series = run["series"].setdefault(name, [[], []])
                t = (ts - run["start"]) / 1e6
                if series[0] and series[0][-1] == t:
                    series[1][-1] = v
                else:
                    series[0].append(t)
                    series[1].append(v)
    if run is None or not any(s in c.triggers for s in values):
        return []
    elapsed = (ts - run["start"]) / 1e6
    held = sum(len(s[0]) for s in run["series"].values())
    if elapsed > m.max_run_s or held > limits.max_state_points:
        state["run"] = None
        why = (f"the run is {elapsed:,.0f} s old; spec.max_run_s is {m.max_run_s:,.0f} s" if elapsed > m.max_run_s
               else f"the run holds {held:,} input points; process.max_state_points is {limits.max_state_points:,}")
        return [DerivedPoint(f, ts, None, why + "; the run is closed", ts) for f in c.outputs.values()]
    return _solve(c, m, run, ts) if solve else []


def _solve(c: Compiled, m: ModelSpec, run: dict[str, Any], ts: int) -> list[DerivedPoint]:
    assert c.model is not None and c.params is not None
    missing = [n for n in c.names if n not in run["series"]]
    if missing:
        return [DerivedPoint(f, ts, None, f"input {missing[0]!r} has no reading in this run", ts)
                for f in c.outputs.values()]
    inputs = RunInputs(run["start"] / 1e6, {n: (np.asarray(s[0]), np.asarray(s[1]))
                                            for n, s in run["series"].items()})
    t_now = (ts - run["start"]) / 1e6
    try:
        result: RunOutputs = c.model.run(inputs, c.params, m.solver)
    except Exception as exc:  # noqa: BLE001 - a model is foreign code: its failure flags the run, never the cloud
        log.warning("process model %s of binding %s raised %s: %s", c.tags.model, c.spec.name,
                    type(exc).__name__, exc)
        return [DerivedPoint(f, ts, None, f"the model raised {type(exc).__name__}: {exc}"[:500], ts)
                for f in c.outputs.values()]
    points = []
    for out, target in c.outputs.items():
        value: float | None
        flag = "" if result.ok else (result.message or "the solve failed")[:500]
        if flag:
            value = None
        else:
            value, flag = _output_value(result, out, t_now)
        if value is not None and not math.isfinite(value):
            value, flag = None, f"the model returned {value} for {out!r}"
        points.append(DerivedPoint(target, ts, value, flag, ts))
    return points


def _output_value(result: RunOutputs, out: str, t_now: float) -> tuple[float | None, str]:
    """One output at ``t_now``: (value, "") or (None, why). A model is foreign code: a malformed answer (times and
    values of different lengths, a value that is not a number) flags the point, never stops the engine."""
    try:
        if out in result.series:
            t, v = result.series[out]
            if not len(t):
                return None, f"the model returned no points of {out!r}"
            t = np.asarray(t, dtype=float)
            if not t[0] - 1e-9 <= t_now <= t[-1] + 1e-9:  # np.interp would hold the end value: a silent guess
                return None, (f"t = {t_now:.1f} s into the run is past the model's horizon for {out!r} "
                              f"({t[0]:g}..{t[-1]:g} s)")
            return float(np.interp(t_now, t, np.asarray(v, dtype=float))), ""
        if out in result.scalars:
            return float(result.scalars[out]), ""
    except (TypeError, ValueError, OverflowError) as exc:
        return None, f"the model returned a malformed {out!r}: {exc}"[:500]
    return None, f"the model returned no {out!r}"


def now_us() -> int:
    return time.time_ns() // 1000
