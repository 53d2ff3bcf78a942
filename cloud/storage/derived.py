"""Storage of virtual-sensor bindings and derived points (schema version 10), SQLite side.

A derived value is written through the same rows as ingest (``build_rows``:
samples, rollups, the series' newest value), so history, aggregates and the
console read it like any sensor; its tags go to ``derived`` in the same
transaction, together with the binding's new state and watermark. The write is
a compare-and-set on the binding's ``rev``: False means another worker moved
the binding on first, and nothing was written. Derived points are written once:
a (series, ts) that has a ``derived`` row already is left as it is.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloud.storage.rows import build_rows, frame_columns
from shared.errors import InputError
from shared.frame import TelemetryFrame

__all__ = ["BindingExists", "BindingRow", "DerivedTag", "DerivedWrite", "UnknownBinding"]


class UnknownBinding(InputError):
    """No binding of that name."""


class BindingExists(InputError):
    """A binding of that name is defined already."""


@dataclass(frozen=True, slots=True)
class BindingRow:
    id: int
    name: str
    device: str
    spec: dict[str, Any]
    enabled: bool
    rev: int
    watermark: int | None
    state: dict[str, Any]
    points: int
    flagged: int
    last_flag: str | None
    created_by: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class DerivedTag:
    """A derived point as ``derived`` tags it (``value`` None when flagged)."""

    field: str
    ts: int
    value: float | None
    flag: str | None
    watermark: int
    model: str
    version: str
    param_hash: str
    backend: str
    rtol: float | None
    atol: float | None


@dataclass(frozen=True, slots=True)
class DerivedWrite:
    """One step of a binding: its points (field, ts, value or None, flag, watermark), tags, new state."""

    binding_id: int
    rev: int
    device: str
    points: Sequence[tuple[str, int, float | None, str, int]]
    tags: tuple[str, str, str, str, float | None, float | None]  # model, version, hash, backend, rtol, atol
    state: dict[str, Any]
    watermark: int | None
    now_us: int


_COLUMNS = ("id, name, device, spec, enabled, rev, watermark, state, points, flagged, last_flag, created_by, "
            "created_at, updated_at")
# The same without the state (windows and open runs, up to megabytes): for readers that need only the definitions.
COLUMNS_NO_STATE = _COLUMNS.replace(" state,", " '{}' AS state,")


def binding_columns(with_state: bool) -> str:
    return _COLUMNS if with_state else COLUMNS_NO_STATE


def binding_row(r: Sequence[Any]) -> BindingRow:
    return BindingRow(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5], r[6], json.loads(r[7]), r[8], r[9],
                      r[10], r[11], r[12], r[13])


def put_binding(con: sqlite3.Connection, name: str, device: str, spec: dict[str, Any], by: str, now_us: int,
                replace: bool, max_per_device: int) -> BindingRow:
    con.execute("BEGIN IMMEDIATE")
    try:
        have = con.execute("SELECT id, device FROM process_bindings WHERE name = ?", (name,)).fetchone()
        if have is not None and not replace:
            raise BindingExists(f"a binding named {name!r} exists already (replace it with --replace)", "name")
        if have is None or have[1] != device:
            count = con.execute("SELECT count(*) FROM process_bindings WHERE device = ?", (device,)).fetchone()[0]
            if count >= max_per_device:
                raise InputError(f"device {device!r} has {count} bindings; process.max_bindings_per_device is "
                                 f"{max_per_device}", "device")
        text = json.dumps(spec, sort_keys=True)
        if have is None:
            con.execute("INSERT INTO process_bindings (name, device, spec, created_by, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (name, device, text, by, now_us, now_us))
        else:  # a new definition keeps the watermark (what is derived stays), and starts from an empty state
            con.execute("UPDATE process_bindings SET device = ?, spec = ?, state = '{}', rev = rev + 1, "
                        "updated_at = ? WHERE id = ?", (device, text, now_us, have[0]))
        row = con.execute(f"SELECT {_COLUMNS} FROM process_bindings WHERE name = ?", (name,)).fetchone()
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return binding_row(row)


def bindings(con: sqlite3.Connection, device: str | None, with_state: bool = True) -> list[BindingRow]:
    cols = binding_columns(with_state)
    if device is None:
        rows = con.execute(f"SELECT {cols} FROM process_bindings ORDER BY name").fetchall()
    else:
        rows = con.execute(f"SELECT {cols} FROM process_bindings WHERE device = ? ORDER BY name",
                           (device,)).fetchall()
    return [binding_row(r) for r in rows]


def set_enabled(con: sqlite3.Connection, name: str, enabled: bool, now_us: int) -> BindingRow:
    if con.execute("UPDATE process_bindings SET enabled = ?, updated_at = ? WHERE name = ?",
                   (int(enabled), now_us, name)).rowcount != 1:
        raise UnknownBinding(f"no binding named {name!r}", "name")
    return binding_row(con.execute(f"SELECT {_COLUMNS} FROM process_bindings WHERE name = ?", (name,)).fetchone())


def advance(con: sqlite3.Connection, w: DerivedWrite, known: dict[tuple[str, str], int]) -> bool:
    """Store one step (points, tags, state) if the binding is still at ``w.rev``; False otherwise."""
    con.execute("BEGIN IMMEDIATE")
    try:
        flagged = [p for p in w.points if p[2] is None]
        last_flag = flagged[-1][3] if flagged else None
        changed = con.execute(
            "UPDATE process_bindings SET rev = rev + 1, state = ?, watermark = ?, points = points + ?, "
            "flagged = flagged + ?, last_flag = COALESCE(?, last_flag), updated_at = ? WHERE id = ? AND rev = ?",
            (json.dumps(w.state), w.watermark, len(w.points) - len(flagged), len(flagged), last_flag, w.now_us,
             w.binding_id, w.rev)).rowcount
        if changed != 1:
            con.execute("ROLLBACK")
            return False
        if w.points:
            _store_points(con, w, known)
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return True


def _store_points(con: sqlite3.Connection, w: DerivedWrite, known: dict[tuple[str, str], int]) -> None:
    from cloud.storage import sqlite as backend  # the ingest helpers: one way to write samples and rollups

    device_id = con.execute("SELECT id FROM devices WHERE name = ?", (w.device,)).fetchone()[0]
    series: dict[tuple[str, str], int] = {}
    for name in {p[0] for p in w.points}:
        key = (w.device, name)
        if key not in known:
            con.execute("INSERT OR IGNORE INTO series (device_id, field, kind) VALUES (?, ?, 'num')", (device_id, name))
        series[key] = known.get(key) or con.execute(
            "SELECT id FROM series WHERE device_id = ? AND field = ?", (device_id, name)).fetchone()[0]
    fresh: list[tuple[str, int, float]] = []
    for name, ts, value, flag, wm in w.points:
        row = con.execute("INSERT OR IGNORE INTO derived VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ts",
                          (series[(w.device, name)], ts, w.binding_id, wm, flag or None, *w.tags)).fetchone()
        if row is not None and value is not None:
            fresh.append((name, ts, value))
    if fresh:
        frames = [TelemetryFrame.model_construct(ts=ts / 1e6, device_id=w.device, sensors={name: value}, metrics={},
                                                 status="ok") for name, ts, value in fresh]
        rows = build_rows(frame_columns(frames, [ts for _, ts, _ in fresh]), series)
        backend.insert_samples(con, rows)
    known.update(series)


def derived(con: sqlite3.Connection, name: str, start: int, stop: int, limit: int) -> list[DerivedTag]:
    row = con.execute("SELECT id FROM process_bindings WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UnknownBinding(f"no binding named {name!r}", "name")
    rows = con.execute(
        "SELECT s.field, d.ts, sm.value, d.flag, d.watermark, d.model, d.version, d.param_hash, d.backend, d.rtol, "
        "d.atol FROM derived d JOIN series s ON s.id = d.series_id "
        "LEFT JOIN samples sm ON sm.series_id = d.series_id AND sm.ts = d.ts "
        "WHERE d.binding_id = ? AND d.ts >= ? AND d.ts < ? ORDER BY d.ts, s.field LIMIT ?",
        (row[0], start, stop, limit)).fetchall()
    return [DerivedTag(*r) for r in rows]
