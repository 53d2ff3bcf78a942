"""The per-machine calibration of cycle-time estimates."""

from __future__ import annotations

import pytest

from shared.cnc import Estimate
from shared.cycletime import MIN_RUNS_FOR_PARTS, apply_calibration, fit_calibration


def est(feed: float, rapid: float, tools: int, dwell: float = 0.0) -> Estimate:
    return Estimate(profile="p", feed_s=feed, rapid_s=rapid, tool_changes=tools, tool_change_s=4.0 * tools,
                    dwell_s=dwell, total_s=feed + rapid + 4.0 * tools + dwell)


def test_no_runs_leave_estimates_unchanged() -> None:
    calibration = fit_calibration([])
    assert calibration.method == "none"
    assert apply_calibration(calibration, est(100, 10, 2)) == pytest.approx(118.0)


def test_few_runs_fit_one_factor() -> None:
    runs = [(est(100, 10, 2), 236.0), (est(50, 5, 1), 118.0)]
    calibration = fit_calibration(runs)
    assert calibration.method == "factor" and calibration.runs == 2
    assert apply_calibration(calibration, est(100, 10, 2)) == pytest.approx(236.0)


def test_enough_runs_recover_the_machine_per_part() -> None:
    # the real machine: feeds 20 % slower, tool changes 7 s instead of 4, 3 s of start-up per run
    runs = []
    for i in range(MIN_RUNS_FOR_PARTS + 12):
        e = est(50.0 + 13 * i, 5.0 + (i * 7) % 11, 1 + i % 4, dwell=float(i % 3))
        runs.append((e, 1.2 * e.feed_s + e.rapid_s + 7.0 * e.tool_changes + e.dwell_s + 3.0))
    calibration = fit_calibration(runs)
    assert calibration.method == "parts"
    assert calibration.weights[0] == pytest.approx(1.2, rel=1e-3)
    assert calibration.weights[2] == pytest.approx(7.0 / 4.0, rel=1e-3)
    assert calibration.constant == pytest.approx(3.0, abs=0.05)
    new = est(300, 20, 3)
    assert apply_calibration(calibration, new) == pytest.approx(1.2 * 300 + 20 + 21 + 3, rel=1e-3)


def test_bad_measurements_are_ignored() -> None:
    runs = [(est(100, 10, 2), -5.0), (est(100, 10, 2), float("nan")), (est(100, 10, 2), 0.0)]
    assert fit_calibration(runs).method == "none"


def test_many_runs_of_one_program_fit_one_factor_for_the_others() -> None:
    """A machine that runs one program all day: its runs say how long that program takes, not how each part of
    an estimate stretches. Another program's calibrated time must follow the one factor, not a weight fitted on
    one part (here 4 times too short)."""
    done, other = est(40, 5, 2, dwell=5), est(10, 20, 6)
    for runs in ([(done, 72.5)] * 20, [(done, 72.5), (est(20, 2.5, 1, 2.5), 36.25)] * 10):
        calibration = fit_calibration(runs)
        assert calibration.method == "factor"
        assert apply_calibration(calibration, done) == pytest.approx(72.5)
        assert apply_calibration(calibration, other) == pytest.approx(1.25 * other.total_s)


def test_a_part_no_measured_program_had_keeps_the_factor() -> None:
    # no program measured dwells: a program with a 60 s dwell must not lose it when calibrated
    runs = []
    for i in range(MIN_RUNS_FOR_PARTS + 4):
        e = est(50.0 + 13 * i, 5.0 + (i * 7) % 11, 1 + i % 4)
        runs.append((e, 1.1 * e.total_s))
    calibration = fit_calibration(runs)
    assert calibration.method == "parts"
    assert apply_calibration(calibration, est(100, 10, 2, dwell=60.0)) == pytest.approx(1.1 * 178.0, rel=1e-3)


def test_a_run_left_standing_over_a_weekend_does_not_skew_the_machine() -> None:
    # a program interrupted on Friday and ended on Monday is 3 days "long": not a measure of the machine
    runs = [(est(100, 10, 2), 130.0)] * 4 + [(est(100, 10, 2), 3 * 86_400.0)]
    calibration = fit_calibration(runs)
    assert calibration.runs == 4
    assert apply_calibration(calibration, est(100, 10, 2)) == pytest.approx(130.0)


@pytest.mark.parametrize("measured", [1e308, 1e200])
def test_enormous_measurements_give_no_infinite_estimate(measured: float) -> None:
    runs = [(est(100, 10, 2), measured)] * (MIN_RUNS_FOR_PARTS + 2) + [(est(100, 10, 2), 120.0)] * 3
    for chosen in (runs, runs[:2]):
        calibration = fit_calibration(chosen)
        value = apply_calibration(calibration, est(100, 10, 2))
        assert value < 1_000.0
