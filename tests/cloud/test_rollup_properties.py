"""Property: an aggregate answered from the rollups equals the one computed from the raw points, exactly.

Random points (out of order, over several batches, late ones and repeated ones among them), random
windows (whole levels, odd widths, under 10 s), starts, stops and every function, on SQLite and on
PostgreSQL. The reference takes the first stored copy of each reading and computes each bucket from
the points alone: the sum exactly (with fractions) rounded once, the mean that sum over the count,
first and last by timestamp.
"""

from __future__ import annotations

import math
import uuid
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud.storage.base import Storage, us
from cloud.storage.rollups import exact_float, exact_sum
from shared.frame import TelemetryFrame

T0_US = 1_767_225_600_000_000 + 3_217_000  # 2026-01-01, a few seconds past the hour
SPAN_US = 3 * 3_600_000_000
WINDOWS_S = [1, 7, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 3600, 7200]
VALUES = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10**6, 10**6),
                   st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.1, 0.2, 0.3, 1e16, -1e16]))
# Points gather around a few instants, so that buckets of every level hold several of them; some sit on
# either side of a bucket boundary.
CENTRES = st.lists(st.one_of(st.integers(0, SPAN_US), st.integers(1, 3).map(lambda h: h * 3_600_000_000 - 3_217_000)),
                   min_size=4, max_size=4)
NEAR = st.one_of(st.integers(0, 400_000_000), st.integers(-20_000_000, 20_000_000))


def _reference(readings: dict[str, dict[int, float]], start: int, stop: int, window: int) -> dict:
    out = {}
    for name, points in readings.items():
        buckets: dict[int, list[tuple[int, float]]] = {}
        for ts, value in points.items():
            if start <= ts < stop:
                buckets.setdefault(ts - ts % window, []).append((ts, value))
        for b, pts in buckets.items():
            pts.sort()
            values = [v for _, v in pts]
            exact = sum(map(Fraction, values))
            try:
                total = float(exact)
            except OverflowError:
                total = math.inf if exact > 0 else -math.inf
            out[(name, b)] = (len(values), repr(total), repr(total / len(values)), min(values), max(values),
                              values[0], values[-1])
    return out


@st.composite
def batches(draw: st.DrawFn, device: str) -> tuple[list[list[TelemetryFrame]], dict[str, dict[int, float]]]:
    """Frames in batches as an edge might send them, and the readings stored (the first copy of each)."""
    centres = draw(CENTRES)
    offsets = [centres[c] + near for c, near in draw(st.lists(st.tuples(st.integers(0, 3), NEAR), min_size=1,
                                                               max_size=80))]
    frames = []
    for off in offsets:
        sensors = {"a": draw(VALUES)}
        if draw(st.booleans()):
            sensors["b"] = draw(VALUES)
        frames.append(TelemetryFrame(ts=(T0_US + off) / 1e6, device_id=device, sensors=sensors))
    order = draw(st.permutations(range(len(frames))))
    cuts = sorted(draw(st.lists(st.integers(0, len(frames)), max_size=4)))
    sent = [frames[k] for k in order]
    parts = [sent[lo:hi] for lo, hi in zip([0, *cuts], [*cuts, len(sent)], strict=True)]
    parts += [draw(st.lists(st.sampled_from(frames), max_size=5))]  # repeats: a retried or overlapping batch
    readings: dict[str, dict[int, float]] = {"a": {}, "b": {}}
    for part in parts:
        for f in part:
            ts = us(f.ts)
            if ts in readings["a"]:  # a reading of this device and time is stored already: the first copy wins
                continue
            for name in ("a", "b"):
                if name in f.sensors:
                    readings[name][ts] = float(f.sensors[name])
    return parts, readings


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_rollup_answers_equal_the_raw_computation(storage: Storage, data: st.DataObject) -> None:
    device = f"d-{uuid.uuid4().hex[:8]}"
    parts, readings = data.draw(batches(device))
    seq = 1
    for part in parts:
        await storage.ingest("edge-a", [(seq + k, f) for k, f in enumerate(part)], None, 1)
        seq += len(part) + 1
    for _ in range(3):
        window = data.draw(st.sampled_from(WINDOWS_S)) * 1_000_000
        lo = T0_US + data.draw(st.integers(-600_000_000, SPAN_US))
        hi = lo + data.draw(st.integers(1, SPAN_US))
        fields = ["a", "b"] if readings["b"] else ["a"]
        got = {}
        for info, buckets in await storage.aggregate(device, fields, lo, hi, window):
            for b, agg in buckets:
                got[(info.field, b)] = (agg.count, repr(agg.sum), repr(agg.sum / agg.count), agg.min, agg.max,
                                        agg.first, agg.last)
        assert got == _reference(readings, lo, hi, window), (lo, hi, window)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=30))
@example([-1.7976930812868853e+308, -1.7976922240799373e+308, 1.7976931348623155e+308, 1.7976920633537105e+308])
def test_an_exact_sum_is_the_sum_of_the_values_without_rounding(values: list[float]) -> None:
    m, e = exact_sum(values)
    exact = sum(map(Fraction, values), Fraction(0))
    assert Fraction(m) * Fraction(2) ** e == exact
    if values and abs(exact) < 2**1000:
        # The exact sum rounded once (CPython divides integers correctly rounded). Not math.fsum: near the largest
        # double it overflows on its way to a small sum ([-1.79e308, -1.79e308, 1.79e308, 1.79e308]).
        assert exact_float(m, e) == float(exact)


def test_a_sum_beyond_the_largest_double_is_infinite() -> None:
    assert exact_float(*exact_sum([1.7e308, 1.7e308])) == math.inf
    assert exact_float(*exact_sum([-1.7e308, -1.7e308])) == -math.inf


@pytest.mark.parametrize(("values", "expected"), [([0.1, 0.2, 0.3], 0.6), ([1e16, 1.0, -1e16], 1.0)])
def test_sums_are_rounded_once(values: list[float], expected: float) -> None:
    assert exact_float(*exact_sum(values)) == expected  # a running float sum gives 0.6000000000000001 and 0.0
