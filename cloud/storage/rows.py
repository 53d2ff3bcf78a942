"""Turning frames into rows: sample rows, rollup partials and newest values; history cursors.

Shared by both backends so that they store exactly the same thing. A batch
holds thousands of frames of a few devices that mostly send the same fields
every time, so the values are gathered into one column per (device, field,
10 s bucket) first; counts, sums, minima and maxima are then taken over whole
columns by the interpreter's C loops instead of one value at a time, and the
partials of the coarser rollup levels are merged from those of 10 s.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, Literal

from cloud.storage.rollups import FINEST_US, LEVELS_US, Partial, merge, partial
from shared.frame import TelemetryFrame

__all__ = ["MINUTE_US", "Column", "CursorError", "Kind", "SampleRows", "build_rows", "decode_cursor",
           "encode_cursor", "field_kinds", "frame_columns", "metric_field", "us"]

MINUTE_US = 60_000_000
_COARSER = LEVELS_US[:-1]
Kind = Literal["num", "bool", "text"]
_NUMBERS = frozenset((float, int, bool))


class CursorError(ValueError):
    """A history cursor this service did not hand out."""


def metric_field(name: str) -> str:
    """Derived metrics live beside the sensors as ``metrics.<name>``."""
    return "metrics." + name


def us(ts: float) -> int:
    return round(ts * 1_000_000)


@dataclass(slots=True)
class Column:
    """The values of one field of one device within one 10 s bucket, in frame order."""

    device: str
    field: str
    bucket: int
    ts: list[int]
    raw: list[Any]


@dataclass(slots=True)
class SampleRows:
    """What a batch adds: sample rows, rollup partials of each level and each series' newest value.

    Sample rows are flat, ready to bind: ``numbers`` holds series id, ts, value
    for each numeric (and boolean) value, ``texts`` series id, ts, text for each
    text value. ``rollups`` maps (series id, level width, bucket) to a partial.
    """

    numbers: list[int | float] = field(default_factory=list)
    texts: list[int | str] = field(default_factory=list)
    rollups: dict[tuple[int, int, int], Partial] = field(default_factory=dict)
    newest: dict[int, tuple[int, float | None, str | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return (len(self.numbers) + len(self.texts)) // 3

    def columns(self) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        """(series ids, timestamps, values, texts) of every sample, numeric ones first."""
        nums: list[Any] = self.numbers
        texts: list[Any] = self.texts
        return (nums[0::3] + texts[0::3], nums[1::3] + texts[1::3], nums[2::3] + [None] * (len(texts) // 3),
                [None] * (len(nums) // 3) + texts[2::3])

    def add(self, sid: int, column: Column) -> None:
        ts, raw = column.ts, column.raw
        types = set(map(type, raw))
        if types <= _NUMBERS:
            self._numbers(sid, column.bucket, ts, list(map(float, raw)))
            last = ts.index(max(ts))
            self._newest(sid, ts[last], float(raw[last]), None)
        elif types == {str}:
            self.texts += chain.from_iterable(zip(repeat(sid), ts, raw))
            last = ts.index(max(ts))
            self._newest(sid, ts[last], None, raw[last])
        else:  # a field that switches between numbers and text
            num = [(t, float(v)) for t, v in zip(ts, raw, strict=True) if not isinstance(v, str)]
            if num:
                self._numbers(sid, column.bucket, [t for t, _ in num], [v for _, v in num])
            self.texts += chain.from_iterable((sid, t, v) for t, v in zip(ts, raw, strict=True) if isinstance(v, str))
            last = ts.index(max(ts))
            value = raw[last]
            self._newest(sid, ts[last], *((None, value) if isinstance(value, str) else (float(value), None)))

    def _numbers(self, sid: int, bucket: int, ts: list[int], values: list[float]) -> None:
        self.numbers += chain.from_iterable(zip(repeat(sid), ts, values))
        # A (series, 10 s bucket) lives in one column, so its partial is built here whole.
        part = partial(ts, values)
        rollups = self.rollups
        rollups[(sid, FINEST_US, bucket)] = part
        for width in _COARSER:
            key = (sid, width, bucket - bucket % width)
            have = rollups.get(key)
            if have is None:
                rollups[key] = part.copy()
            else:
                merge(have, part)

    def _newest(self, sid: int, ts: int, value: float | None, text: str | None) -> None:
        have = self.newest.get(sid)
        if have is None or have[0] < ts:
            self.newest[sid] = (ts, value, text)


def frame_columns(frames: Sequence[TelemetryFrame], stamps: Sequence[int]) -> list[Column]:
    """The values of ``frames`` (``stamps``: their timestamps in µs) as columns per device, field and 10 s."""
    groups: dict[tuple[str, int], list[int]] = {}
    for k, stamp in enumerate(stamps):
        key = (frames[k].device_id, stamp - stamp % FINEST_US)
        members = groups.get(key)
        if members is None:
            groups[key] = [k]
        else:
            members.append(k)
    out: list[Column] = []
    for (device, bucket), members in groups.items():
        group = [frames[k] for k in members]
        ts = [stamps[k] for k in members]
        sensors = [f.sensors for f in group]
        metrics = [f.metrics for f in group]
        names = tuple(sensors[0]) + tuple(map(metric_field, metrics[0]))
        if _same_keys(sensors) and _same_keys(metrics):
            # The usual case: every frame of the bucket has the same fields in the same order.
            table = list(map(tuple, map(dict.values, sensors)))
            if metrics[0]:
                table = [(*row, *m.values()) for row, m in zip(table, metrics, strict=True)]
            out += [Column(device, name, bucket, ts, list(col))
                    for name, col in zip(names, zip(*table, strict=True), strict=True)]
            continue
        by_field: dict[str, Column] = {}
        for frame, at in zip(group, ts, strict=True):
            items: Iterable[tuple[str, Any]] = frame.sensors.items()
            if frame.metrics:
                items = chain(items, ((metric_field(k), v) for k, v in frame.metrics.items()))
            for name, raw in items:
                column = by_field.get(name)
                if column is None:
                    column = by_field[name] = Column(device, name, bucket, [], [])
                column.ts.append(at)
                column.raw.append(raw)
        out += by_field.values()
    return out


def _same_keys(dicts: list[dict[str, Any]]) -> bool:
    keys = list(map(tuple, dicts))
    return keys.count(keys[0]) == len(keys)


def build_rows(columns: Iterable[Column], series_of: dict[tuple[str, str], int]) -> SampleRows:
    """Sample rows, rollup partials and newest values; ``series_of`` maps (device, field) to a series id."""
    rows = SampleRows()
    for column in columns:
        rows.add(series_of[(column.device, column.field)], column)
    return rows


def field_kinds(frames: Sequence[TelemetryFrame]) -> dict[tuple[str, str], Kind]:
    """Every (device, field) of ``frames`` with the kind of its first value."""
    kinds: dict[tuple[str, str], Kind] = {}
    for frame in frames:
        for name, raw in frame.sensors.items():
            key = (frame.device_id, name)
            if key not in kinds:
                kinds[key] = "text" if isinstance(raw, str) else "bool" if isinstance(raw, bool) else "num"
        for name in frame.metrics:
            kinds.setdefault((frame.device_id, metric_field(name)), "num")
    return kinds


def encode_cursor(field_name: str, ts: int) -> str:
    return base64.urlsafe_b64encode(f"{ts}|{field_name}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, field_name = text.split("|", 1)
        return field_name, int(ts)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise CursorError("not a cursor this service handed out") from None
