"""Turning frames into rows: sample rows, per-minute rollups and newest values; history cursors.

Shared by both backends so that they store exactly the same thing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from shared.frame import TelemetryFrame

__all__ = ["MINUTE_US", "CursorError", "Kind", "build_rows", "decode_cursor", "encode_cursor", "field_kinds",
           "metric_field", "us"]

MINUTE_US = 60_000_000
Kind = Literal["num", "bool", "text"]


class CursorError(ValueError):
    """A history cursor this service did not hand out."""


def metric_field(name: str) -> str:
    """Derived metrics live beside the sensors as ``metrics.<name>``."""
    return "metrics." + name


def us(ts: float) -> int:
    return round(ts * 1_000_000)


Rollup = list[Any]  # [count, sum, min, max, first_ts, first, last_ts, last]


def build_rows(
    frames: Sequence[TelemetryFrame],
    series_of: dict[tuple[str, str], int],
) -> tuple[list[tuple[int, int, float | None, str | None]], dict[tuple[int, int], Rollup],
           dict[int, tuple[int, float | None, str | None]]]:
    """Sample rows, per-minute rollups and each series' newest value for ``frames``.

    ``series_of`` maps (device, field) to a series id and must hold every field.
    """
    rows: list[tuple[int, int, float | None, str | None]] = []
    rollups: dict[tuple[int, int], Rollup] = {}
    newest: dict[int, tuple[int, float | None, str | None]] = {}
    append = rows.append
    for frame in frames:
        ts = us(frame.ts)
        minute = ts - ts % MINUTE_US
        device = frame.device_id
        items: Iterable[tuple[str, Any]] = frame.sensors.items()
        if frame.metrics:
            items = [*items, *((metric_field(k), v) for k, v in frame.metrics.items())]
        for name, raw in items:
            sid = series_of[(device, name)]
            if isinstance(raw, str):
                value, text = None, raw
            else:
                value, text = float(raw), None
            append((sid, ts, value, text))
            last = newest.get(sid)
            if last is None or last[0] < ts:
                newest[sid] = (ts, value, text)
            if value is None:
                continue
            agg = rollups.get((sid, minute))
            if agg is None:
                rollups[(sid, minute)] = [1, value, value, value, ts, value, ts, value]
                continue
            agg[0] += 1
            agg[1] += value
            if value < agg[2]:
                agg[2] = value
            if value > agg[3]:
                agg[3] = value
            if ts < agg[4]:
                agg[4], agg[5] = ts, value
            if ts > agg[6]:
                agg[6], agg[7] = ts, value
    return rows, rollups, newest


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
