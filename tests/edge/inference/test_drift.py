"""Drift: PSI per input column over the last rows, checked against figures computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.inference.drift import ColumnReference, DriftStats, drift_level, psi


def stats(window: int = 100, min_rows: int = 10) -> DriftStats:
    return DriftStats(
        [ColumnReference("temp", [0.0], [0.5, 0.5]), ColumnReference("rpm", [10.0, 20.0], [0.25, 0.5, 0.25])],
        window_rows=window, min_rows=min_rows,
    )


def test_psi_matches_the_hand_computed_figure() -> None:
    # 80 % below the cut, 20 % above, against 50/50: 0.3 ln 1.6 + (-0.3) ln 0.4
    hand = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
    assert hand == pytest.approx(0.415888, abs=1e-6)
    drift = stats()
    drift.add([[-1.0, 15.0]] * 80 + [[1.0, 15.0]] * 20)
    summary = drift.summary()
    assert summary.psi["temp"] == pytest.approx(hand, abs=1e-4)
    assert summary.level == "drift"
    assert summary.rows == 100
    assert list(summary.psi) == ["rpm", "temp"]  # the largest first: every rpm in the middle bin
    assert summary.psi["rpm"] > summary.psi["temp"]


def test_an_empty_bin_counts_as_one_in_ten_thousand() -> None:
    # every row in the middle bin of rpm: the two outer bins are empty
    drift = stats()
    drift.add([[-1.0, 15.0], [1.0, 15.0]] * 20)
    hand = 2 * (1e-4 - 0.25) * math.log(1e-4 / 0.25) + (1 - 0.5) * math.log(1 / 0.5)
    assert drift.summary().psi["rpm"] == pytest.approx(hand, abs=1e-4)
    assert math.isfinite(hand)


@pytest.mark.parametrize("each", [2, 10])  # a few rows and many are binned in two ways
def test_bins_follow_the_cut_points_a_value_on_a_cut_goes_above_it(each: int) -> None:
    drift = stats(min_rows=1)
    for _ in range(10 // each):
        drift.add([[0.0, 10.0]] * each + [[-0.5, 20.0]] * each)  # on the cuts: the upper bins
    # temp: 10 at 0.0 (upper), 10 below -> 50/50, no drift
    assert drift.summary().psi["temp"] == pytest.approx(0.0, abs=1e-9)
    # rpm: 10 in the middle bin, 10 in the top bin, none in the bottom one
    hand = (1e-4 - 0.25) * math.log(1e-4 / 0.25) + 0 + (0.5 - 0.25) * math.log(0.5 / 0.25)
    assert drift.summary().psi["rpm"] == pytest.approx(hand, abs=1e-4)


def test_only_the_last_window_rows_count() -> None:
    drift = stats(window=10, min_rows=5)
    drift.add([[-1.0, 15.0]] * 10)
    drift.add([[1.0, 15.0]] * 4)
    drift.add([[1.0, 15.0]] * 6)  # the ten below the cut have all left the ring
    hand = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2.0)
    assert drift.summary().psi["temp"] == pytest.approx(hand, abs=1e-4)
    assert drift.rows == 10
    drift.add([[-1.0, 15.0]] * 25)  # more rows than the ring in one go: the last ten stay
    assert drift.summary().psi["temp"] == pytest.approx(hand, abs=1e-4)


def test_matches_a_plain_recount_after_many_partial_batches() -> None:
    rng = np.random.default_rng(7)
    drift = stats(window=37, min_rows=1)
    seen = []
    for size in rng.integers(1, 20, 40):
        rows = np.column_stack([rng.normal(0.3, 1, size), rng.normal(14, 6, size)])
        drift.add(rows)
        seen.extend(rows.tolist())
    last = np.array(seen[-37:])
    temp = np.bincount((last[:, 0] >= 0).astype(int), minlength=2) / 37
    rpm = np.bincount((last[:, 1] >= 10).astype(int) + (last[:, 1] >= 20), minlength=3) / 37
    assert drift.column_psi() == pytest.approx([psi(temp, [0.5, 0.5]), psi(rpm, [0.25, 0.5, 0.25])], abs=1e-9)


def test_nothing_is_judged_under_min_rows() -> None:
    drift = stats(min_rows=50)
    drift.add([[-1.0, 15.0]] * 49)
    summary = drift.summary()
    assert (summary.level, summary.psi, summary.rows) == ("unknown", {}, 49)


@pytest.mark.parametrize(("value", "level"), [(0.0, "ok"), (0.0999, "ok"), (0.1, "warn"), (0.2499, "warn"),
                                              (0.25, "drift"), (3.0, "drift")])
def test_levels(value: float, level: str) -> None:
    assert drift_level(value) == level
