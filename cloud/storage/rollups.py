"""Rollup levels: partial aggregates per series and time bucket, kept at ingest, and how a query reads them.

Three levels, 10 s, 1 min and 1 h: each row holds a bucket's count, exact
sum, minimum, maximum, and first and last value (by timestamp). An aggregate
reads, for each stretch of its range, the coarsest level whose buckets fit
inside one of its own buckets, and raw points only where no level fits (the
part of the range before the first and after the last 10 s boundary, and the
inside of buckets whose width is not a multiple of 10 s).

Sums are exact. Every finite double is an integer times a power of two, so a
sum of doubles is kept as ``(m, e)``, the integer ``m`` times ``2**e`` (``m``
is stored as text: it may exceed 64 bits). Partials then merge in any order
without rounding, and the sum an aggregate answers is the exact sum of the
bucket's values rounded once to the nearest double: the same number whether
it was put together from rollups of any level or from the raw points, and the
number ``math.fsum`` gives. The mean is that sum divided by the count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from math import frexp, ldexp
from typing import Any

__all__ = ["FINEST_US", "LEVELS_US", "Backfill", "Partial", "RollupRow", "add_partial", "exact_float", "exact_sum",
           "fold_raw", "fold_rollups", "merge", "partial", "plan", "rollup_spans", "rows_to_store"]

LEVELS_US = (3_600_000_000, 60_000_000, 10_000_000)  # bucket widths, coarsest first
FINEST_US = LEVELS_US[-1]
MAX_SPLIT_BUCKETS = 100_000  # past this many buckets of an odd width (e.g. 15 s), read the raw points alone

# [count, m, e, min, max, first_ts, first, last_ts, last]: the sum is m * 2**e.
Partial = list[Any]
# What a rollup row holds after its key (series id, bucket): count, m (text), e, min, max, first_ts, first,
# last_ts, last.
RollupRow = tuple[Any, ...]


def exact_sum(values: Sequence[float]) -> tuple[int, int]:
    """The exact sum of finite doubles as ``(m, e)``, ``m * 2**e``, with ``m`` odd (or 0)."""
    if not values:
        return 0, 0
    lo, hi = min(map(abs, values)), max(map(abs, values))
    if hi == 0.0:
        return 0, 0
    if lo == 0.0:
        lo = min(a for a in map(abs, values) if a)
    shift = 53 - frexp(lo)[1]  # each value times 2**shift is an integer
    if frexp(hi)[1] + shift <= 1023:  # and a double, so the scaling is exact and C loops do the work
        m = sum(map(int, map(ldexp, values, repeat(shift))))
        return _normal(m, -shift)
    ratios = [v.as_integer_ratio() for v in values]  # values far apart in magnitude: the slow way
    top = max(d for _, d in ratios).bit_length() - 1
    return _normal(sum(n << (top - d.bit_length() + 1) for n, d in ratios), -top)


def _normal(m: int, e: int) -> tuple[int, int]:
    if m == 0:
        return 0, 0
    zeros = (m & -m).bit_length() - 1
    return m >> zeros, e + zeros


def exact_float(m: int, e: int) -> float:
    """``m * 2**e`` rounded once to the nearest double (±inf beyond the largest one)."""
    try:
        return float(m << e) if e >= 0 else m / (1 << -e)  # int / int is correctly rounded
    except OverflowError:
        return float("inf") if m > 0 else float("-inf")


def partial(ts: Sequence[int], values: Sequence[float]) -> Partial:
    """The partial aggregate of values (each at the timestamp beside it), in any order."""
    m, e = exact_sum(values)
    first, last = ts.index(min(ts)), ts.index(max(ts))
    return [len(values), m, e, min(values), max(values), ts[first], values[first], ts[last], values[last]]


def merge(into: Partial, other: Partial) -> None:
    """Add ``other`` to ``into``, exactly."""
    into[0] += other[0]
    e1, e2 = into[2], other[2]
    if e1 <= e2:
        into[1] += other[1] << (e2 - e1)
    else:
        into[1] = (into[1] << (e1 - e2)) + other[1]
        into[2] = e2
    if other[3] < into[3]:
        into[3] = other[3]
    if other[4] > into[4]:
        into[4] = other[4]
    if other[5] < into[5]:
        into[5], into[6] = other[5], other[6]
    if other[7] > into[7]:
        into[7], into[8] = other[7], other[8]


def add_partial(parts: dict[Any, Partial], key: Any, part: Partial) -> None:
    have = parts.get(key)
    if have is None:
        parts[key] = list(part)
    else:
        merge(have, part)


# --- ingest ----------------------------------------------------------------------------
def rollup_spans(parts: dict[tuple[int, int, int], Partial]) -> list[tuple[int, list[int], int, int]]:
    """Per level: (width, series ids, first bucket, last bucket) that a batch's partials touch, to read the
    rows stored for them already."""
    spans: dict[int, tuple[set[int], int, int]] = {}
    for sid, width, bucket in parts:
        have = spans.get(width)
        if have is None:
            spans[width] = ({sid}, bucket, bucket)
        else:
            have[0].add(sid)
            spans[width] = (have[0], min(have[1], bucket), max(have[2], bucket))
    return [(width, sorted(sids), lo, hi) for width, (sids, lo, hi) in sorted(spans.items())]


def rows_to_store(parts: dict[tuple[int, int, int], Partial],
                  stored: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows to write for a batch's partials: (series id, width, bucket, count, m, e, min, max, first_ts,
    first, last_ts, last), each merged with the row stored for its key before (``stored`` rows have that
    shape too, and may hold keys the batch does not touch: they are left alone)."""
    merged = dict(parts)
    for row in stored:
        key = (row[0], row[1], row[2])
        part = merged.get(key)
        if part is not None:
            have = _from_row(row[3:])
            merge(have, part)
            merged[key] = have
    return [(sid, width, bucket, p[0], str(p[1]), p[2], p[3], p[4], p[5], p[6], p[7], p[8])
            for (sid, width, bucket), p in merged.items()]


def _from_row(row: Sequence[Any]) -> Partial:
    return [row[0], int(row[1]), row[2], *row[3:]]


def _stored(sid: int, parts: dict[tuple[int, int], Partial]) -> list[tuple[Any, ...]]:
    out = []
    for (width, bucket), p in parts.items():
        m, e = _normal(p[1], p[2])
        out.append((sid, width, bucket, p[0], str(m), e, *p[3:]))
    return out


class Backfill:
    """The rollup rows of one series built from its stored samples, fed in timestamp order (migration 4).

    Per-minute rollups of an older schema count for the minutes before the series' first sample (their
    samples were removed by retention); ``minutes`` gives them first. ``points`` returns the rows of the
    buckets it has seen end, ``finish`` the rest.
    """

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self._parts: dict[tuple[int, int], Partial] = {}
        self._bucket: int | None = None
        self._ts: list[int] = []
        self._values: list[float] = []

    def minutes(self, rows: Iterable[tuple[int, int, float, float, float, int, float, int, float]]) -> None:
        """Old per-minute rows: (bucket, count, float sum, min, max, first_ts, first, last_ts, last)."""
        for bucket, cnt, total, *rest in rows:
            part = [cnt, *exact_sum([total]), *rest]
            for width in LEVELS_US[:-1]:
                add_partial(self._parts, (width, bucket - bucket % width), part)

    def points(self, rows: Iterable[tuple[int, float]]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for ts, value in rows:
            bucket = ts - ts % FINEST_US
            if bucket != self._bucket:
                self._close()
                hour = bucket - bucket % LEVELS_US[0]
                if self._bucket is not None and hour != self._bucket - self._bucket % LEVELS_US[0]:
                    out += self._flush(hour)
                self._bucket = bucket
            self._ts.append(ts)
            self._values.append(value)
        return out

    def finish(self) -> list[tuple[Any, ...]]:
        self._close()
        return self._flush(None)

    def _close(self) -> None:
        if self._ts and self._bucket is not None:
            part = partial(self._ts, self._values)
            self._parts[(FINEST_US, self._bucket)] = part
            for width in LEVELS_US[:-1]:
                add_partial(self._parts, (width, self._bucket - self._bucket % width), part)
        self._ts, self._values = [], []

    def _flush(self, before: int | None) -> list[tuple[Any, ...]]:
        done = {k: p for k, p in self._parts.items() if before is None or k[1] < before}
        for key in done:
            del self._parts[key]
        return _stored(self.sid, done)


# --- queries ---------------------------------------------------------------------------
def plan(start: int, stop: int, window: int) -> tuple[dict[int, list[tuple[int, int]]], list[tuple[int, int]]]:
    """Where each part of [start, stop) is read from: ranges per level width, and raw ranges.

    Buckets of ``window`` are aligned to the epoch. A level bucket is used only when it lies inside
    [start, stop) and inside one bucket of ``window``; the coarsest such level wins.
    """
    levels: dict[int, list[tuple[int, int]]] = {width: [] for width in LEVELS_US}
    raw: list[tuple[int, int]] = []
    dividing = tuple(w for w in LEVELS_US if window % w == 0)
    if dividing:  # every aligned bucket of these lies inside one bucket of the window
        _cover(start, stop, dividing, levels, raw)
    else:
        fitting = tuple(w for w in LEVELS_US if w < window)
        first = start - start % window
        if not fitting or (stop - first) // window > MAX_SPLIT_BUCKETS:
            raw.append((start, stop))
        else:
            for b in range(first, stop, window):
                _cover(max(b, start), min(b + window, stop), fitting, levels, raw)
    return {w: _joined(r) for w, r in levels.items() if r}, _joined(raw)


def _cover(lo: int, hi: int, widths: tuple[int, ...], levels: dict[int, list[tuple[int, int]]],
           raw: list[tuple[int, int]]) -> None:
    for k, width in enumerate(widths):
        a, b = -(-lo // width) * width, hi - hi % width
        if a < b:
            levels[width].append((a, b))
            _cover(lo, a, widths[k + 1:], levels, raw)
            _cover(b, hi, widths[k + 1:], levels, raw)
            return
    if lo < hi:
        raw.append((lo, hi))


def _joined(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def fold_rollups(acc: dict[tuple[int, int], Partial], rows: Iterable[RollupRow], window: int) -> None:
    """Add rollup rows (series id, bucket, count, m, e, min, max, first_ts, first, last_ts, last) to the
    partials of the window's buckets."""
    get = acc.get
    for sid, bucket, cnt, m, e, vmin, vmax, fts, first, lts, last in rows:  # merge() inlined: the hot loop
        key = (sid, bucket - bucket % window)
        have = get(key)
        if have is None:
            acc[key] = [cnt, int(m), e, vmin, vmax, fts, first, lts, last]
            continue
        have[0] += cnt
        if have[2] <= e:
            have[1] += int(m) << (e - have[2])
        else:
            have[1] = (have[1] << (have[2] - e)) + int(m)
            have[2] = e
        if vmin < have[3]:
            have[3] = vmin
        if vmax > have[4]:
            have[4] = vmax
        if fts < have[5]:
            have[5], have[6] = fts, first
        if lts > have[7]:
            have[7], have[8] = lts, last


def fold_raw(acc: dict[tuple[int, int], Partial], rows: Iterable[tuple[int, int, float]], window: int) -> None:
    """Add raw points (series id, ts, value) to the partials of the window's buckets."""
    groups: dict[tuple[int, int], tuple[list[int], list[float]]] = {}
    for sid, ts, value in rows:
        key = (sid, ts - ts % window)
        group = groups.get(key)
        if group is None:
            groups[key] = ([ts], [value])
        else:
            group[0].append(ts)
            group[1].append(value)
    for key, (stamps, values) in groups.items():
        add_partial(acc, key, partial(stamps, values))
