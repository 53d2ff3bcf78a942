"""The queue file's events table: what the edge tells its operators, kept for the cloud and for `twinedge events`.

An edge event (``shared.batch.EdgeEvent``) is stored as MessagePack with a
sequence of its own (SQLite AUTOINCREMENT; a fresh table starts at the current
time in microseconds, like the frames and alerts). Unlike frames and alerts, an
event the cloud acknowledged (``events_acked_through``) stays, marked synced,
so that `twinedge events` can still show it. The table holds about
``store.events_max`` events (10,000 by default, a few MB): past it the oldest
events the cloud has go. One the cloud lacks goes only when the queue holds
no frame (events are never dropped before telemetry), and is counted under
``event_drops["over_cap"]``; while frames wait, the table may pass the cap and
the disk budget drops frames first. The frame queue's full-disk policies never
delete an event (``edge.store`` applies them to frames only).

These are the SQL steps; ``edge.store.Store`` runs them in its transactions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import msgpack

from shared.batch import EVENT_LEVELS, EdgeEvent

__all__ = ["EVENTS_SCHEMA", "EventFilter", "EventRow", "StoredEvent", "event_rows"]

EVENT_ROW_OVERHEAD = 120  # bytes an event row takes beyond its payload (row header, columns, indexes)

EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    level INTEGER NOT NULL,
    device_id TEXT,
    stored_at REAL NOT NULL,
    synced INTEGER NOT NULL DEFAULT 0,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_unsynced ON events (synced, seq);
"""

# ts, level (0 operator .. 2 developer), device, stored_at, payload
EventRow = tuple[float, int, str | None, float, bytes]


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    stored_at: float
    synced: bool
    payload: bytes

    def event_dict(self) -> dict[str, Any]:
        return dict(msgpack.unpackb(self.payload, raw=False))


@dataclass(frozen=True)
class EventFilter:
    """Which events `twinedge events` shows: up to a level (operator: operator only), a device, a time."""

    level: str = "developer"
    device: str | None = None
    since: float | None = None
    after_seq: int = 0
    limit: int = 50


def event_rows(events: Sequence[EdgeEvent], now: float | None = None) -> list[EventRow]:
    at = time.time() if now is None else now
    return [(e.ts, EVENT_LEVELS.index(e.level), e.device, at,
             msgpack.packb(e.model_dump(mode="json"), use_bin_type=True)) for e in events]


def row_bytes(rows: Sequence[EventRow]) -> int:
    return sum(len(r[4]) + EVENT_ROW_OVERHEAD for r in rows)


async def start_sequence(db: aiosqlite.Connection) -> None:
    async with db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'") as cur:
        started = await cur.fetchone()
    if started is None:
        await db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('events', ?)", (int(time.time() * 1e6),))


async def measure(db: aiosqlite.Connection) -> tuple[int, int, int]:
    """Events kept, those not synced yet, and about how many bytes all take."""
    async with db.execute("SELECT COUNT(*), COALESCE(SUM(synced = 0), 0), COALESCE(SUM(length(payload)), 0) "
                          "FROM events") as cur:
        row = await cur.fetchone()
    count, unsynced, size = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
    return count, unsynced, size + count * EVENT_ROW_OVERHEAD


async def insert(db: aiosqlite.Connection, rows: Sequence[EventRow]) -> None:
    await db.executemany("INSERT INTO events(ts, level, device_id, stored_at, payload) VALUES (?, ?, ?, ?, ?)", rows)


async def delete_oldest(db: aiosqlite.Connection, n: int, *, unsynced_too: bool) -> tuple[int, int, int]:
    """Delete up to ``n`` oldest events: those the cloud has first, then (``unsynced_too``) those it lacks;
    returns (deleted, of them not synced, their bytes)."""
    order = "ORDER BY synced DESC, seq" if unsynced_too else "AND synced = 1 ORDER BY seq"
    async with db.execute(f"DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE 1 {order} LIMIT ?) "  # noqa: S608
                          "RETURNING synced, length(payload)", (n,)) as cur:
        rows = list(await cur.fetchall())
    return len(rows), sum(1 for r in rows if not r[0]), sum(int(r[1]) for r in rows) + len(rows) * EVENT_ROW_OVERHEAD


async def mark_synced(db: aiosqlite.Connection, through_seq: int) -> int:
    cur = await db.execute("UPDATE events SET synced = 1 WHERE synced = 0 AND seq <= ?", (through_seq,))
    return int(cur.rowcount)


async def read_unsynced(db: aiosqlite.Connection, after_seq: int, limit: int) -> list[StoredEvent]:
    async with db.execute(
        "SELECT seq, stored_at, synced, payload FROM events WHERE synced = 0 AND seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ) as cur:
        return [StoredEvent(seq, stored_at, bool(synced), bytes(payload))
                for seq, stored_at, synced, payload in await cur.fetchall()]


async def read_recent(db: aiosqlite.Connection, f: EventFilter) -> list[StoredEvent]:
    """The newest ``f.limit`` events that pass the filter, oldest first."""
    where = ["level <= ?", "seq > ?"]
    args: list[Any] = [EVENT_LEVELS.index(f.level), f.after_seq]
    if f.device is not None:
        where.append("device_id = ?")
        args.append(f.device)
    if f.since is not None:
        where.append("ts >= ?")
        args.append(f.since)
    sql = (f"SELECT seq, stored_at, synced, payload FROM events WHERE {' AND '.join(where)} "  # noqa: S608
           "ORDER BY seq DESC LIMIT ?")
    async with db.execute(sql, (*args, f.limit)) as cur:
        rows = await cur.fetchall()
    return [StoredEvent(seq, stored_at, bool(synced), bytes(payload)) for seq, stored_at, synced, payload in rows][::-1]
