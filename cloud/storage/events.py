"""What the store keeps of the edges' events, as both backends give them: the rows, the list query, its cursor.

An event arrives with a sync batch (``cloud.api.sync``) and is stored once per
(edge, the edge's event sequence) in the batch's transaction. The list is
newest first by the edge's time ``ts`` (µs), then by id; a cursor is the
(ts, id) of the last event of a page. ``level`` is kept as a number, 0
operator, 1 technical, 2 developer, so that "up to technical" is ``level <= 1``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloud.storage.keyset import Arguments, decode_keyset_cursor, encode_keyset_cursor, newest_first
from shared.batch import EVENT_LEVELS

if TYPE_CHECKING:
    import asyncpg

__all__ = ["EdgeEventIn", "EventQuery", "EventRecord", "decode_event_cursor", "encode_event_cursor",
           "event_filter", "events_pg", "events_sqlite", "purge_events_pg", "purge_events_sqlite",
           "store_events_pg", "store_events_sqlite"]


@dataclass(frozen=True, slots=True)
class EdgeEventIn:
    """An event of a batch as the store takes it: ``ts`` in µs, ``level`` 0..2, ``seq`` the edge's sequence."""

    seq: int
    ts: int
    level: int
    kind: str
    device: str | None
    source: str | None
    message: str
    details: dict[str, Any]

    def row(self, edge: str, now_us: int) -> tuple[Any, ...]:
        return (edge, self.seq, self.ts, self.level, self.kind, self.device, self.source, self.message,
                json.dumps(self.details, separators=(",", ":")), now_us)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    edge: str
    seq: int
    ts: int
    level: int
    kind: str
    device: str | None
    source: str | None
    message: str
    details: str
    received_at: int

    @property
    def level_name(self) -> str:
        return EVENT_LEVELS[self.level] if 0 <= self.level < len(EVENT_LEVELS) else "developer"


@dataclass(frozen=True, slots=True)
class EventQuery:
    edge: str | None = None
    device: str | None = None
    levels: tuple[int, ...] = field(default=(0, 1, 2))  # the levels shown
    kind: str | None = None
    start: int | None = None  # ts >= start (µs)
    stop: int | None = None  # ts < stop (µs)
    limit: int = 100
    after: tuple[int, int] | None = None  # (ts, id) of the last event of the previous page


_COLUMNS = "id, edge, seq, ts, level, kind, device, source, message, details, received_at"
_INSERT = ("INSERT INTO edge_events (edge, seq, ts, level, kind, device, source, message, details, received_at) "
           "VALUES ({}) ON CONFLICT (edge, seq) DO NOTHING")


def event_filter(query: EventQuery, param: Callable[[int], str]) -> tuple[str, list[Any]]:
    """The SELECT (newest first, after the cursor) and its arguments; ``param(n)`` writes the n-th placeholder."""
    where: list[str] = []
    arg = Arguments(param)
    if query.edge is not None:
        where.append(f"edge = {arg(query.edge)}")
    if query.device is not None:
        where.append(f"device = {arg(query.device)}")
    if set(query.levels) != {0, 1, 2}:
        where.append(f"level IN ({', '.join(arg(level) for level in sorted(set(query.levels)))})")
    if query.kind is not None:
        where.append(f"kind = {arg(query.kind)}")
    if query.start is not None:
        where.append(f"ts >= {arg(query.start)}")
    if query.stop is not None:
        where.append(f"ts < {arg(query.stop)}")
    return newest_first("edge_events", _COLUMNS, "ts", where, arg, query.after, query.limit), arg.values


def encode_event_cursor(record: EventRecord) -> str:
    return encode_keyset_cursor("e", record.ts, record.id)


def decode_event_cursor(cursor: str) -> tuple[int, int]:
    """(ts, id) of an event cursor; InputError for one this service did not hand out."""
    return decode_keyset_cursor(cursor, "e")


# --- SQLite (inside the ingest transaction, or a read) --------------------------------


def store_events_sqlite(con: sqlite3.Connection, edge: str, events: Sequence[EdgeEventIn], now_us: int) -> int:
    """Each event not stored yet for (edge, seq); returns how many were new."""
    if not events:
        return 0
    before = con.total_changes
    con.executemany(_INSERT.format(", ".join("?" * 10)), [e.row(edge, now_us) for e in events])
    return con.total_changes - before


def events_sqlite(con: sqlite3.Connection, query: EventQuery) -> list[EventRecord]:
    sql, args = event_filter(query, lambda _n: "?")
    return [EventRecord(*r) for r in con.execute(sql, args)]


def purge_events_sqlite(con: sqlite3.Connection, before: int) -> int:
    return con.execute("DELETE FROM edge_events WHERE ts < ?", (before,)).rowcount


# --- PostgreSQL -------------------------------------------------------------------------


async def store_events_pg(con: asyncpg.Connection, edge: str, events: Sequence[EdgeEventIn], now_us: int) -> None:
    if events:
        await con.executemany(_INSERT.format(", ".join(f"${n}" for n in range(1, 11))),
                              [e.row(edge, now_us) for e in events])


async def events_pg(con: asyncpg.Connection, query: EventQuery) -> list[EventRecord]:
    sql, args = event_filter(query, lambda n: f"${n}")
    return [EventRecord(*r) for r in await con.fetch(sql, *args)]


async def purge_events_pg(con: asyncpg.Connection, before: int) -> int:
    status = str(await con.execute("DELETE FROM edge_events WHERE ts < $1", before))
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
