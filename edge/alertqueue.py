"""The queue file's alerts table: model alerts waiting for the cloud, beside the frames but never dropped for them.

An alert event (``shared.batch.AlertEvent``) is stored as MessagePack with a
sequence of its own (SQLite AUTOINCREMENT; a fresh table starts at the current
time in microseconds, like the frames). It leaves the table when the cloud
acknowledged it (``alerts_acked_through``), or when the table holds more than
``store.alerts_max`` events (100,000 by default, about 30 MB): then the oldest
go, counted under ``alert_drops["over_cap"]``. The frame queue's full-disk policies never delete
an alert: ``edge.store`` applies them to frames only, and stores a batch's
alerts even when it refuses the frames.

These are the SQL steps; ``edge.store.Store`` runs them in its transactions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import msgpack

from shared.batch import AlertEvent

__all__ = ["ALERTS_SCHEMA", "AlertRow", "StoredAlert", "alert_rows"]

ALERT_ROW_OVERHEAD = 120  # bytes an alert row takes beyond its payload (row header, columns, identity index)

ALERTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    ts REAL NOT NULL,
    stored_at REAL NOT NULL,
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_identity ON alerts (alert_id, event);
"""

AlertRow = tuple[str, float, float, str, str, bytes]  # device_id, ts, stored_at, alert_id, event, payload


@dataclass(frozen=True)
class StoredAlert:
    seq: int
    device_id: str
    ts: float
    stored_at: float
    payload: bytes

    def alert_dict(self) -> dict[str, Any]:
        return dict(msgpack.unpackb(self.payload, raw=False))


def alert_rows(alerts: Sequence[AlertEvent], now: float | None = None) -> list[AlertRow]:
    """The rows to insert for ``alerts`` (the payload is the event as plain data, in MessagePack)."""
    at = time.time() if now is None else now
    return [
        (a.device_id, a.ts, at, a.alert_id, a.event,
         msgpack.packb(a.model_dump(mode="json"), use_bin_type=True))
        for a in alerts
    ]


def row_bytes(rows: Sequence[AlertRow]) -> int:
    return sum(len(r[5]) + ALERT_ROW_OVERHEAD for r in rows)


async def start_sequence(db: aiosqlite.Connection) -> None:
    """A fresh table starts above any sequence an earlier file can have used (the time in µs)."""
    async with db.execute("SELECT seq FROM sqlite_sequence WHERE name='alerts'") as cur:
        started = await cur.fetchone()
    if started is None:
        await db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('alerts', ?)", (int(time.time() * 1e6),))


async def measure(db: aiosqlite.Connection) -> tuple[int, int]:
    """How many alerts wait, and about how many bytes they take."""
    async with db.execute("SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM alerts") as cur:
        row = await cur.fetchone()
    count, size = (int(row[0]), int(row[1])) if row else (0, 0)
    return count, size + count * ALERT_ROW_OVERHEAD


async def insert(db: aiosqlite.Connection, rows: Sequence[AlertRow]) -> tuple[int, int]:
    """Insert ``rows`` (an event already waiting is skipped); returns (inserted, about their bytes)."""
    cur = await db.executemany(
        "INSERT OR IGNORE INTO alerts(device_id, ts, stored_at, alert_id, event, payload) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    inserted = cur.rowcount if cur.rowcount >= 0 else len(rows)
    return inserted, row_bytes(rows) * inserted // max(1, len(rows))


async def delete_oldest(db: aiosqlite.Connection, n: int) -> tuple[int, int]:
    """Delete the ``n`` oldest alerts; returns (deleted, their bytes)."""
    return await _delete(db, "seq IN (SELECT seq FROM alerts ORDER BY seq LIMIT ?)", (n,))


async def delete_through(db: aiosqlite.Connection, through_seq: int) -> tuple[int, int]:
    """Delete the alerts with seq <= through_seq; returns (deleted, their bytes)."""
    return await _delete(db, "seq <= ?", (through_seq,))


async def _delete(db: aiosqlite.Connection, where: str, args: tuple[int, ...]) -> tuple[int, int]:
    async with db.execute(f"DELETE FROM alerts WHERE {where} RETURNING length(payload)", args) as cur:  # noqa: S608
        sizes = [int(r[0]) for r in await cur.fetchall()]
    return len(sizes), sum(sizes) + len(sizes) * ALERT_ROW_OVERHEAD


async def read(db: aiosqlite.Connection, after_seq: int, limit: int) -> list[StoredAlert]:
    async with db.execute(
        "SELECT seq, device_id, ts, stored_at, payload FROM alerts WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ) as cur:
        return [StoredAlert(seq, device_id, ts, stored_at, bytes(payload))
                for seq, device_id, ts, stored_at, payload in await cur.fetchall()]


async def oldest(db: aiosqlite.Connection) -> tuple[int, float] | None:
    async with db.execute("SELECT seq, stored_at FROM alerts ORDER BY seq LIMIT 1") as cur:
        row = await cur.fetchone()
    return (int(row[0]), float(row[1])) if row else None
