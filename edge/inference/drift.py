"""Drift of what a device's model scores: population stability (PSI) per input column against the model card.

The model card holds, per input column (before scaling), the training data's interior cut points ``edges`` and the
fraction of training rows in each bin, ``expected``. The edge bins every scored row the same way, a value ``x``
going to bin ``i`` where ``edges[i-1] <= x < edges[i]`` (below the first edge: bin 0; at or above the last: the last
bin), and keeps the bin counts of exactly the last ``window_rows`` rows in a ring: the oldest row leaves as a new one
comes, so the figures describe the recent past and nothing older (no exponential decay to tune).

    PSI = sum over bins of (a - e) * ln(a / e)

with ``a`` the recent fraction and ``e`` the expected one, an empty bin counting as 1e-4 on either side so that no
term is infinite. Levels: PSI < 0.1 ok, 0.1 to < 0.25 warn, >= 0.25 drift; with fewer than ``min_rows`` rows
nothing is judged ("unknown"). A device's level is that of its worst column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["EMPTY_BIN", "MAX_REPORTED", "PSI_DRIFT", "PSI_WARN", "ColumnReference", "DriftStats", "DriftSummary",
           "drift_level", "psi"]

EMPTY_BIN = 1e-4
PSI_WARN = 0.1
PSI_DRIFT = 0.25
MAX_REPORTED = 16  # columns in a report, the largest PSI first
_FEW_ROWS = 16  # rows binned by one comparison against every cut point; more by a sorted search per column


@dataclass(frozen=True, slots=True)
class ColumnReference:
    """One input column's training distribution: interior cut points and the fraction of rows in each bin."""

    name: str
    edges: Sequence[float]
    expected: Sequence[float]


@dataclass(frozen=True, slots=True)
class DriftSummary:
    level: str  # "ok", "warn", "drift" or "unknown"
    psi: dict[str, float]  # at most MAX_REPORTED columns, the largest first
    rows: int


def psi(actual: npt.ArrayLike, expected: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """PSI per row of ``(columns, bins)`` fractions (1-D: one column), empty bins counted as ``EMPTY_BIN``."""
    a = np.maximum(np.asarray(actual, dtype=np.float64), EMPTY_BIN)
    e = np.maximum(np.asarray(expected, dtype=np.float64), EMPTY_BIN)
    result: npt.NDArray[np.float64] = np.sum((a - e) * np.log(a / e), axis=-1)
    return result


def drift_level(value: float) -> str:
    if value >= PSI_DRIFT:
        return "drift"
    return "warn" if value >= PSI_WARN else "ok"


class DriftStats:
    """Bin counts of the last ``window_rows`` rows of one device's model inputs, per column (a ring)."""

    def __init__(self, columns: Sequence[ColumnReference], *, window_rows: int, min_rows: int) -> None:
        self.names = [c.name for c in columns]
        self.window_rows = window_rows
        self.min_rows = min_rows
        self.bins = max(len(c.expected) for c in columns)
        # Every column padded to the widest: cut points at +inf are never reached, expected 0 is never observed.
        self._edges = np.full((len(columns), self.bins - 1), np.inf)
        self._expected = np.zeros((len(columns), self.bins))
        for j, column in enumerate(columns):
            self._edges[j, :len(column.edges)] = column.edges
            self._expected[j, :len(column.expected)] = column.expected
        self._ring = np.zeros((window_rows, len(columns)), dtype=np.int32)  # flat (column, bin) indices
        self._counts = np.zeros(len(columns) * self.bins, dtype=np.int64)
        self._next = 0
        self.rows = 0  # rows in the ring, at most window_rows
        self._offsets = np.arange(len(columns)) * self.bins

    def add(self, rows: npt.ArrayLike) -> None:
        """Count scored input rows ``(n, columns)`` (before scaling); the oldest leave once the ring is full."""
        values = np.asarray(rows, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.names) or not len(values):
            return
        values = values[-self.window_rows:]
        # the number of cut points at or under x, per column (padding at +inf is never reached): compared all at
        # once for a few rows, by a sorted search per column for many (the card's edges rise)
        if len(values) < _FEW_ROWS:
            bins = (values[:, :, np.newaxis] >= self._edges[np.newaxis]).sum(axis=2)
        else:
            columns = np.ascontiguousarray(values.T)
            bins = np.empty(values.shape, dtype=np.int64)
            for j, edges in enumerate(self._edges):
                bins[:, j] = edges.searchsorted(columns[j], side="right")
        bins += self._offsets
        n = len(bins)
        slots = (self._next + np.arange(n)) % self.window_rows
        evicted = slots[slots < self.rows]  # slots that hold an older row (all of them once the ring is full)
        size = len(self._counts)
        if len(evicted):
            self._counts -= np.bincount(self._ring[evicted].ravel(), minlength=size)
        self._ring[slots] = bins
        self._counts += np.bincount(bins.ravel(), minlength=size)
        self._next = int((self._next + n) % self.window_rows)
        self.rows = min(self.window_rows, self.rows + n)

    def column_psi(self) -> npt.NDArray[np.float64]:
        """PSI per column over the rows in the ring (zeros while there are none)."""
        if not self.rows:
            return np.zeros(len(self.names))
        actual = self._counts.reshape(len(self.names), self.bins) / self.rows
        # a padding bin has neither expected nor observed rows: both count as 1e-4 and its term is 0
        return psi(actual, self._expected)

    def summary(self) -> DriftSummary:
        if self.rows < self.min_rows:
            return DriftSummary("unknown", {}, self.rows)
        values = self.column_psi()
        order = np.argsort(-values, kind="stable")[:MAX_REPORTED]
        shown = {self.names[i]: round(float(values[i]), 4) for i in order}
        return DriftSummary(drift_level(float(values.max())), shown, self.rows)
