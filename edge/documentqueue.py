"""The queue file's documents table: records a source harvested that are not readings, waiting for the cloud.

A document (``shared.batch.Document``: a CNC program with its features, a cutting
tool or another MTConnect asset, a device's data-item registry) is stored as
MessagePack with a sequence of its own (SQLite AUTOINCREMENT; a fresh table starts
at the current time in microseconds, like the frames, alerts and events). It
leaves the table when the cloud acknowledged it (``documents_acked_through``):
the cloud keeps the newest body and the history. The table holds at most
``store.documents_max`` documents; past it the oldest go, counted under
``document_drops["over_cap"]``. The frame queue's full-disk policies never delete
a document (``edge.store`` applies them to frames only).

These are the SQL steps; ``edge.store.Store`` runs them in its transactions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import msgpack

from shared.batch import Document

__all__ = ["DOCUMENTS_SCHEMA", "DocumentRow", "StoredDocument", "document_rows"]

DOCUMENT_ROW_OVERHEAD = 160  # bytes a document row takes beyond its payload (row header, kind, key)

DOCUMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    device_id TEXT,
    stored_at REAL NOT NULL,
    payload BLOB NOT NULL
);
"""

DocumentRow = tuple[float, str, str, str | None, float, bytes]  # ts, kind, key, device, stored_at, payload


@dataclass(frozen=True)
class StoredDocument:
    seq: int
    kind: str
    key: str
    stored_at: float
    payload: bytes

    def document_dict(self) -> dict[str, Any]:
        return dict(msgpack.unpackb(self.payload, raw=False))

    def document(self) -> Document:
        return Document.model_validate(self.document_dict())


def document_rows(documents: Sequence[Document], now: float | None = None) -> list[DocumentRow]:
    at = time.time() if now is None else now
    return [(d.ts, d.kind, d.key, d.device, at, msgpack.packb(d.model_dump(mode="json"), use_bin_type=True))
            for d in documents]


def row_bytes(rows: Sequence[DocumentRow]) -> int:
    return sum(len(r[5]) + DOCUMENT_ROW_OVERHEAD for r in rows)


async def start_sequence(db: aiosqlite.Connection) -> None:
    """A fresh table starts above any sequence an earlier file can have used (the time in µs)."""
    async with db.execute("SELECT seq FROM sqlite_sequence WHERE name='documents'") as cur:
        started = await cur.fetchone()
    if started is None:
        await db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('documents', ?)", (int(time.time() * 1e6),))


async def measure(db: aiosqlite.Connection) -> tuple[int, int]:
    """How many documents wait, and about how many bytes they take."""
    async with db.execute("SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM documents") as cur:
        row = await cur.fetchone()
    count, size = (int(row[0]), int(row[1])) if row else (0, 0)
    return count, size + count * DOCUMENT_ROW_OVERHEAD


async def insert(db: aiosqlite.Connection, rows: Sequence[DocumentRow]) -> None:
    await db.executemany(
        "INSERT INTO documents(ts, kind, key, device_id, stored_at, payload) VALUES (?, ?, ?, ?, ?, ?)", rows
    )


async def delete_oldest(db: aiosqlite.Connection, n: int) -> tuple[int, int]:
    """Delete the ``n`` oldest documents; returns (deleted, their bytes)."""
    return await _delete(db, "seq IN (SELECT seq FROM documents ORDER BY seq LIMIT ?)", (n,))


async def delete_oldest_bytes(db: aiosqlite.Connection, nbytes: int) -> tuple[int, int]:
    """Delete the oldest documents until at least ``nbytes`` of them are gone; returns (deleted, their bytes)."""
    freed, through = 0, None
    async with db.execute("SELECT seq, length(payload) FROM documents ORDER BY seq") as cur:
        async for seq, size in cur:
            freed, through = freed + int(size), int(seq)
            if freed >= nbytes:
                break
    return (0, 0) if through is None else await delete_through(db, through)


async def delete_through(db: aiosqlite.Connection, through_seq: int) -> tuple[int, int]:
    """Delete the documents with seq <= through_seq; returns (deleted, their bytes)."""
    return await _delete(db, "seq <= ?", (through_seq,))


async def _delete(db: aiosqlite.Connection, where: str, args: tuple[int, ...]) -> tuple[int, int]:
    async with db.execute(f"DELETE FROM documents WHERE {where} RETURNING length(payload)", args) as cur:  # noqa: S608
        sizes = [int(r[0]) for r in await cur.fetchall()]
    return len(sizes), sum(sizes) + len(sizes) * DOCUMENT_ROW_OVERHEAD


async def read(db: aiosqlite.Connection, after_seq: int, limit: int) -> list[StoredDocument]:
    async with db.execute(
        "SELECT seq, kind, key, stored_at, payload FROM documents WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ) as cur:
        return [StoredDocument(seq, kind, key, stored_at, bytes(payload))
                for seq, kind, key, stored_at, payload in await cur.fetchall()]
