"""Storage of virtual-sensor bindings and derived points (schema version 10), PostgreSQL side.

The same semantics as the SQLite side (``cloud.storage.derived``): a derived
value goes through the ingest rows (samples, rollups, the series' newest value)
so history, aggregates and the live feed read it like any sensor; its tags go
to ``derived`` in the same transaction as the binding's new state. The write is
a compare-and-set on the binding's ``rev`` (``UPDATE ... WHERE rev = $n``: under
read committed, the second of two racing workers waits for the first to commit,
re-reads the row, finds ``rev`` moved on and writes nothing). A (series, ts)
that has a ``derived`` row already is left as it is.

The functions take a connection; ``PostgresStorage`` owns the pool, the
partitions and the notification channel.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from cloud.storage import postgres_sql as q
from cloud.storage.derived import (
    BindingExists,
    BindingRow,
    DerivedTag,
    DerivedWrite,
    UnknownBinding,
    binding_columns,
    binding_row,
)
from cloud.storage.notify import CHANNEL
from cloud.storage.rollups import Partial
from cloud.storage.rows import build_rows, frame_columns
from shared.errors import InputError
from shared.frame import TelemetryFrame

__all__ = ["advance", "bindings", "derived", "put_binding", "set_enabled"]

_COLUMNS = binding_columns(with_state=True)
# Two definitions of one device's bindings at once would both pass the count: they take turns on this lock.
_DEVICE_LOCK = "SELECT pg_advisory_xact_lock(7307, hashtext($1))"
_INSERT_DERIVED = """INSERT INTO derived (series_id, ts, binding_id, watermark, flag, model, version, param_hash,
        backend, rtol, atol)
    SELECT s, t, $3, w, f, $6, $7, $8, $9, $10, $11
    FROM unnest($1::bigint[], $2::bigint[], $4::bigint[], $5::text[]) AS u(s, t, w, f)
    ORDER BY s, t ON CONFLICT DO NOTHING RETURNING series_id, ts"""


async def put_binding(con: asyncpg.Connection, name: str, device: str, spec: dict[str, Any], by: str, now_us: int,
                      replace: bool, max_per_device: int) -> BindingRow:
    async with con.transaction():
        await con.execute(_DEVICE_LOCK, device)
        have = await con.fetchrow("SELECT id, device FROM process_bindings WHERE name = $1 FOR UPDATE", name)
        if have is not None and not replace:
            raise BindingExists(f"a binding named {name!r} exists already (replace it with --replace)", "name")
        if have is None or have[1] != device:
            count = await con.fetchval("SELECT count(*) FROM process_bindings WHERE device = $1", device)
            if count >= max_per_device:
                raise InputError(f"device {device!r} has {count} bindings; process.max_bindings_per_device is "
                                 f"{max_per_device}", "device")
        text = json.dumps(spec, sort_keys=True)
        if have is None:
            await con.execute("INSERT INTO process_bindings (name, device, spec, created_by, created_at, updated_at) "
                              "VALUES ($1, $2, $3, $4, $5, $6)", name, device, text, by, now_us, now_us)
        else:  # a new definition keeps the watermark (what is derived stays), and starts from an empty state
            await con.execute("UPDATE process_bindings SET device = $1, spec = $2, state = '{}', rev = rev + 1, "
                              "updated_at = $3 WHERE id = $4", device, text, now_us, have[0])
        row = await con.fetchrow(f"SELECT {_COLUMNS} FROM process_bindings WHERE name = $1", name)
    return binding_row(row)


async def bindings(con: asyncpg.Connection, device: str | None, with_state: bool = True) -> list[BindingRow]:
    cols = binding_columns(with_state)
    if device is None:
        rows = await con.fetch(f"SELECT {cols} FROM process_bindings ORDER BY name")
    else:
        rows = await con.fetch(f"SELECT {cols} FROM process_bindings WHERE device = $1 ORDER BY name", device)
    return [binding_row(r) for r in rows]


async def set_enabled(con: asyncpg.Connection, name: str, enabled: bool, now_us: int) -> BindingRow:
    row = await con.fetchrow(f"UPDATE process_bindings SET enabled = $1, updated_at = $2 WHERE name = $3 "
                             f"RETURNING {_COLUMNS}", int(enabled), now_us, name)
    if row is None:
        raise UnknownBinding(f"no binding named {name!r}", "name")
    return binding_row(row)


async def advance(con: asyncpg.Connection, w: DerivedWrite, known: dict[tuple[str, str], int],
                  put_rollups: Callable[[asyncpg.Connection, dict[tuple[int, int, int], Partial]], Any],
                  notify: Callable[[Sequence[TelemetryFrame], Sequence[int]], list[str]]) -> bool:
    """Store one step (points, tags, state) if the binding is still at ``w.rev``; False otherwise."""
    flagged = [p for p in w.points if p[2] is None]
    last_flag = flagged[-1][3] if flagged else None
    async with con.transaction():
        changed = await con.execute(
            "UPDATE process_bindings SET rev = rev + 1, state = $1, watermark = $2, points = points + $3, "
            "flagged = flagged + $4, last_flag = COALESCE($5, last_flag), updated_at = $6 WHERE id = $7 AND rev = $8",
            json.dumps(w.state), w.watermark, len(w.points) - len(flagged), len(flagged), last_flag, w.now_us,
            w.binding_id, w.rev)
        if not changed.endswith(" 1"):
            return False  # another worker moved the binding on first; the transaction writes nothing
        series = await _store_points(con, w, known, put_rollups, notify) if w.points else {}
    known.update(series)  # only once committed: a rolled-back series id must not be cached
    return True


async def _series(con: asyncpg.Connection, device: str, names: set[str],
                  known: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    out = {(device, n): known[(device, n)] for n in names if (device, n) in known}
    missing = sorted(n for n in names if (device, n) not in out)
    if missing:
        device_id = await con.fetchval("SELECT id FROM devices WHERE name = $1", device)
        await con.execute(q.INSERT_SERIES, [device_id] * len(missing), missing, ["num"] * len(missing))
        for _, name, sid in await con.fetch(q.SERIES_IDS, [device_id] * len(missing), missing):
            out[(device, name)] = sid
    return out


async def _store_points(con: asyncpg.Connection, w: DerivedWrite, known: dict[tuple[str, str], int],
                        put_rollups: Callable[[asyncpg.Connection, dict[tuple[int, int, int], Partial]], Any],
                        notify: Callable[[Sequence[TelemetryFrame], Sequence[int]], list[str]],
                        ) -> dict[tuple[str, str], int]:
    series = await _series(con, w.device, {p[0] for p in w.points}, known)
    model, version, param_hash, backend, rtol, atol = w.tags
    fresh_keys = {(r[0], r[1]) for r in await con.fetch(
        _INSERT_DERIVED, [series[(w.device, p[0])] for p in w.points], [p[1] for p in w.points], w.binding_id,
        [p[4] for p in w.points], [p[3] or None for p in w.points], model, version, param_hash, backend, rtol, atol)}
    fresh = [(name, ts, value) for name, ts, value, _, _ in w.points
             if value is not None and (series[(w.device, name)], ts) in fresh_keys]
    if not fresh:
        return series
    frames = [TelemetryFrame.model_construct(ts=ts / 1e6, device_id=w.device, sensors={name: value}, metrics={},
                                             status="ok") for name, ts, value in fresh]
    stamps = [ts for _, ts, _ in fresh]
    rows = build_rows(frame_columns(frames, stamps), series)
    await con.execute(q.INSERT_SAMPLES, *rows.columns())
    if rows.rollups:
        await put_rollups(con, rows.rollups)
    if rows.newest:
        ids = sorted(rows.newest)
        await con.execute(q.UPDATE_SERIES_LAST, ids, [rows.newest[i][0] for i in ids],
                          [rows.newest[i][1] for i in ids], [rows.newest[i][2] for i in ids])
    for payload in notify(frames, stamps):  # the other replicas' live feeds see derived values too
        await con.execute(q.NOTIFY, CHANNEL, payload)
    return series


async def derived(con: asyncpg.Connection, name: str, start: int, stop: int, limit: int) -> list[DerivedTag]:
    binding_id = await con.fetchval("SELECT id FROM process_bindings WHERE name = $1", name)
    if binding_id is None:
        raise UnknownBinding(f"no binding named {name!r}", "name")
    rows = await con.fetch(
        "SELECT s.field, d.ts, sm.value, d.flag, d.watermark, d.model, d.version, d.param_hash, d.backend, d.rtol, "
        "d.atol FROM derived d JOIN series s ON s.id = d.series_id "
        "LEFT JOIN samples sm ON sm.series_id = d.series_id AND sm.ts = d.ts "
        "WHERE d.binding_id = $1 AND d.ts >= $2 AND d.ts < $3 ORDER BY d.ts, s.field LIMIT $4",
        binding_id, start, stop, limit)
    return [DerivedTag(*r) for r in rows]

