"""Window formulas through the engine's step function, against values worked out by hand (closed forms)."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.process.bindings import BindingSpec, compile_binding
from cloud.process.engine import Limits, Reading, step
from cloud.process.registry import ModelRegistry

S = 1_000_000  # µs per second
T0 = 1_767_225_600 * S  # a Monday 00:00 UTC: minute windows start on it


def run(spec: dict[str, Any], readings: list[Reading], *, state: dict[str, Any] | None = None,
        limits: Limits | None = None, fields: tuple[str, ...] = ("x", "y")) -> list[tuple[int, float | None, str]]:
    compiled = compile_binding(BindingSpec.model_validate({"name": "w", "device": "d", "spec": spec}), fields, (),
                               ModelRegistry())
    _, points = step(compiled, state or {}, readings, limits or Limits())
    return [(p.ts, p.value, p.flag) for p in points]


def series(values: list[float], every_s: float = 1.0, sensor: str = "x", t0: int = T0) -> list[Reading]:
    return [Reading(t0 + round(k * every_s * S), sensor, v) for k, v in enumerate(values)]


def test_rolling_mean_over_the_last_n_readings() -> None:
    # x_k = k at 1 s spacing; a 5 s rolling window (t - 5 s, t] holds the readings k-4 .. k: mean k - 2.
    points = run({"kind": "formula", "expression": "mean(x)", "output": "m",
                  "window": {"kind": "rolling", "seconds": 5}}, series([float(k) for k in range(20)]))
    assert len(points) == 20
    for k, (ts, value, flag) in enumerate(points):
        assert ts == T0 + k * S and flag == ""
        first = max(0, k - 4)
        assert value == pytest.approx((first + k) / 2)  # the mean of an arithmetic run


def test_rolling_count_min_max_sum_and_the_newest_value() -> None:
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    points = run({"kind": "formula", "expression": "count(x) * 1000 + max(x) * 10 + min(x) + x / 100",
                  "output": "m", "window": {"kind": "rolling", "seconds": 3}}, series(values))
    for k, (_, value, _) in enumerate(points):
        window = values[max(0, k - 2):k + 1]  # (t - 3 s, t]: this reading and the two before
        assert value == pytest.approx(len(window) * 1000 + max(window) * 10 + min(window) + values[k] / 100)


def test_tumbling_60_s_mean_is_dated_at_the_window_end() -> None:
    # x = 2 t (t in s) every 2 s for three minutes: minute m's mean is 2 * mean(0, 2, ..., 58) + 120 m.
    readings = [Reading(T0 + t * S, "x", float(2 * t)) for t in range(0, 180, 2)]
    points = run({"kind": "formula", "expression": "mean(x)", "output": "m",
                  "window": {"kind": "tumbling", "seconds": 60}}, readings)
    # A window is closed by the first reading of the next one: two closed minutes, the third still open.
    assert [ts for ts, _, _ in points] == [T0 + 60 * S, T0 + 120 * S]
    assert points[0][1] == pytest.approx(58.0)  # mean of 0, 4, ..., 116 = 2 * 29
    assert points[1][1] == pytest.approx(58.0 + 120.0)


def test_tumbling_windows_are_epoch_aligned_and_count_only_their_own_points() -> None:
    # readings at :50, :55 of one minute and :05 of the next: the first window holds two points, dated at :00.
    readings = [Reading(T0 + t * S, "x", v) for t, v in ((50, 1.0), (55, 3.0), (65, 10.0), (125, 0.0))]
    points = run({"kind": "formula", "expression": "count(x) * 100 + mean(x)", "output": "m",
                  "window": {"kind": "tumbling", "seconds": 60}}, readings)
    assert points == [(T0 + 60 * S, pytest.approx(202.0), ""), (T0 + 120 * S, pytest.approx(110.0), "")]


def test_rate_is_the_slope_over_the_window() -> None:
    # a counter rising 1.25 per 0.5 s reading (plus an offset): 2.5 / s in every window of two or more points
    points = run({"kind": "formula", "expression": "rate(x)", "output": "r",
                  "window": {"kind": "rolling", "seconds": 10}}, series([100 + 1.25 * k for k in range(15)], 0.5))
    assert points[0][1] is None and points[0][2]  # one point: no slope, flagged rather than a made-up 0
    assert all(v == pytest.approx(2.5) for _, v, _ in points[1:])
    # over a tumbling minute, a flow total read every 10 s gives litres per second
    readings = [Reading(T0 + t * S, "x", 0.2 * t * t) for t in range(0, 130, 10)]  # not linear: the chord slope
    tumbling = run({"kind": "formula", "expression": "rate(x) * 60", "output": "r",
                    "window": {"kind": "tumbling", "seconds": 60}}, readings)
    assert tumbling[0][1] == pytest.approx((0.2 * 50**2 - 0) / 50 * 60)
    assert tumbling[1][1] == pytest.approx((0.2 * 110**2 - 0.2 * 60**2) / 50 * 60)


def test_a_window_past_the_state_limit_flags_its_point() -> None:
    points = run({"kind": "formula", "expression": "mean(x)", "output": "m",
                  "window": {"kind": "rolling", "seconds": 3600}}, series([1.0] * 12), limits=Limits(10))
    assert [v for _, v, _ in points[:10]] == [1.0] * 10
    assert points[10][1] is None and "max_state_points" in points[10][2]


def test_a_window_state_carries_across_steps() -> None:
    """The live path runs one step per batch: splitting the readings anywhere gives the same points."""
    spec = {"kind": "formula", "expression": "mean(x)", "output": "m", "window": {"kind": "tumbling", "seconds": 60}}
    readings = [Reading(T0 + t * S, "x", float(t % 7)) for t in range(0, 300, 3)]
    whole = run(spec, readings)
    compiled = compile_binding(BindingSpec.model_validate({"name": "w", "device": "d", "spec": spec}), ("x",), (),
                               ModelRegistry())
    state: dict[str, Any] = {}
    parts: list[tuple[int, float | None, str]] = []
    for cut in range(0, len(readings), 7):
        state, found = step(compiled, state, readings[cut:cut + 7], Limits())
        parts += [(p.ts, p.value, p.flag) for p in found]
    assert parts == whole and len(whole) == 4


def test_a_window_state_is_stored_packed_and_an_older_state_of_lists_reads_the_same() -> None:
    spec = {"kind": "formula", "expression": "mean(x)", "output": "m", "window": {"kind": "rolling", "seconds": 5}}
    compiled = compile_binding(BindingSpec.model_validate({"name": "w", "device": "d", "spec": spec}), ("x",), (),
                               ModelRegistry())
    readings = [Reading(T0 + k * S, "x", 0.1 * k) for k in range(4)]
    state, _ = step(compiled, {}, readings, Limits())
    assert set(state["win"]["x"]) == {"t", "v", "int"}  # binary, not a list of numbers
    older = {**state, "win": {"x": [[r.ts for r in readings], [r.value for r in readings]]}}
    later = [Reading(T0 + 4 * S, "x", 0.4)]
    assert step(compiled, older, later, Limits())[1] == step(compiled, state, later, Limits())[1]
    (point,) = step(compiled, state, later, Limits())[1]
    assert point.value == pytest.approx(0.2)  # the mean of 0.0 .. 0.4: the packed window lost nothing
