"""Per-machine calibration of cycle-time estimates: fitted from measured runs, applied to new estimates.

The edge estimates a program's cycle time from a machine profile (``shared.cnc.Estimate``: feed, rapid,
tool-change, dwell and other seconds). A real machine differs from its profile (blending of moves, slower
tool changers, feed overrides), so the cloud measures runs (MTConnect program and execution events) and fits,
per machine, one weight per part of the estimate and a constant:

    measured ≈ w_feed·feed_s + w_rapid·rapid_s + w_tool·tool_change_s + w_dwell·(dwell_s + other_s) + c

by non-negative least squares (no weight and no constant below zero: an extra minute of feed never makes a
program shorter). With fewer than ``MIN_RUNS_FOR_PARTS`` runs, or runs of fewer than ``MIN_PROGRAMS_FOR_PARTS``
different estimates, it fits a single factor on the total instead: a machine that runs one program all day
measures how long that program takes, not how each part of an estimate stretches (five unknowns need five
different programs), and a weight fitted from one program would make every other program's time wrong. A part
that none of the measured programs has (no dwell anywhere) keeps the factor as its weight.
Pure Python: the cloud imports it without the edge's dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.cnc import Estimate

__all__ = ["MIN_PROGRAMS_FOR_PARTS", "MIN_RUNS_FOR_PARTS", "Calibration", "apply_calibration", "fit_calibration"]

MIN_RUNS_FOR_PARTS = 8  # runs needed to fit the parts apart; fewer fit one factor
MIN_PROGRAMS_FOR_PARTS = 5  # different estimates among them (the parts and the constant: five unknowns)
# A run more than this many times longer (or shorter) than its estimate is not a measure of the machine: a
# program left in feed hold over a weekend, a run cut short. Feed overrides and a profile far off stay inside.
MAX_RATIO = 10.0
_ITERATIONS = 2_000


@dataclass(frozen=True)
class Calibration:
    """A fitted correction. ``weights`` are (feed, rapid, tool change, dwell and other); ``runs`` the runs it
    was fitted on; ``method`` ``"parts"`` (NNLS on the parts), ``"factor"`` (one factor) or ``"none"``."""

    weights: tuple[float, float, float, float]
    constant: float
    runs: int
    method: str

    def as_dict(self) -> dict[str, object]:
        return {"feed": self.weights[0], "rapid": self.weights[1], "tool_change": self.weights[2],
                "dwell": self.weights[3], "constant": self.constant, "runs": self.runs, "method": self.method}


IDENTITY = Calibration((1.0, 1.0, 1.0, 1.0), 0.0, 0, "none")


def _parts(estimate: Estimate) -> list[float]:
    return [estimate.feed_s, estimate.rapid_s, estimate.tool_change_s, estimate.dwell_s + estimate.other_s, 1.0]


def fit_calibration(runs: Sequence[tuple[Estimate, float]]) -> Calibration:
    """Fit a machine's correction from ``(estimate of the program, measured seconds of one run)`` pairs.

    Runs with a measured time of zero or less, or more than ``MAX_RATIO`` times off their estimate (a program
    left standing in feed hold, a run cut short), are ignored. No runs give the identity (estimates unchanged);
    fewer than ``MIN_RUNS_FOR_PARTS``, or fewer than ``MIN_PROGRAMS_FOR_PARTS`` different estimates, give one
    factor on the total (least squares through the origin); more give non-negative weights per part plus a
    constant. Never raises on any numbers it is given.
    """
    good = [(e, float(m)) for e, m in runs if _plausible(e, m)]
    if not good:
        return IDENTITY
    num = sum(e.total_s * m for e, m in good)
    den = sum(e.total_s * e.total_s for e, _ in good)
    factor = num / den if den > 0 else 1.0
    rows = [_parts(e) for e, _ in good]
    if len(good) < MIN_RUNS_FOR_PARTS or len({tuple(r) for r in rows}) < MIN_PROGRAMS_FOR_PARTS:
        return Calibration((factor,) * 4, 0.0, len(good), "factor")
    target = [m for _, m in good]
    # scale columns to comparable sizes so coordinate descent converges evenly
    norms = [max(sum(r[j] * r[j] for r in rows) ** 0.5, 1e-12) for j in range(5)]
    scaled = [[r[j] / norms[j] for j in range(5)] for r in rows]
    x = _nnls(scaled, target)
    weights = [x[j] / norms[j] if any(r[j] > 0 for r in rows) else factor for j in range(5)]
    return Calibration((weights[0], weights[1], weights[2], weights[3]), weights[4], len(good), "parts")


def _plausible(estimate: Estimate, measured: float) -> bool:
    if not 0.0 < measured < 1e9 or estimate.total_s < 0:  # NaN compares false: left out too
        return False
    return estimate.total_s == 0 or 1 / MAX_RATIO <= measured / estimate.total_s <= MAX_RATIO


def _nnls(rows: list[list[float]], target: list[float]) -> list[float]:
    """Non-negative least squares by cyclic coordinate descent (five unknowns: plenty fast and exact enough)."""
    k = len(rows[0])
    x = [0.0] * k
    gram = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    rhs = [sum(r[i] * t for r, t in zip(rows, target, strict=True)) for i in range(k)]
    for _ in range(_ITERATIONS):
        change = 0.0
        for i in range(k):
            if gram[i][i] <= 1e-18:
                continue
            grad = rhs[i] - sum(gram[i][j] * x[j] for j in range(k) if j != i)
            new = max(0.0, grad / gram[i][i])
            change = max(change, abs(new - x[i]))
            x[i] = new
        if change < 1e-12:
            break
    return x


def apply_calibration(calibration: Calibration, estimate: Estimate) -> float:
    """The calibrated cycle time in seconds of ``estimate`` (never below zero)."""
    parts = _parts(estimate)
    w = calibration.weights
    return max(0.0, w[0] * parts[0] + w[1] * parts[1] + w[2] * parts[2] + w[3] * parts[3] + calibration.constant)
