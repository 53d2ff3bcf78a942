"""The durable store-and-forward queue: SQLite in WAL mode through aiosqlite.

A frame is durable once the transaction that inserted it committed. Every stored
frame gets a per-edge sequence number that only grows (SQLite AUTOINCREMENT; a
fresh file starts at the current time in microseconds, so sequences stay above
those of a file that had to be set aside). Frames leave only when the cloud
acknowledged them (``ack``) or when the disk budget forces the configured policy,
and every such drop is counted by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import msgpack

from edge.config import StoreConfig
from shared.codec import encode_frame
from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

__all__ = ["QueueStats", "Store", "StoreError", "StoredRow"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    ts REAL NOT NULL,
    stored_at REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS frames_identity ON frames (device_id, ts);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
QUARANTINE_MAX_ROWS = 2_000
QUARANTINE_MAX_PAYLOAD = 32 * 1024  # with the row cap: at most 64 MB, inside the disk budget


def _set_aside_if_damaged(path: Path) -> str | None:
    """Move a damaged queue file aside (loudly) so the edge can go on with a fresh one."""
    if not path.exists():
        return None
    reason: str | None = None
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            reason = "; ".join(str(r) for r in rows[:5])
    except sqlite3.DatabaseError as exc:
        reason = str(exc)
    if reason is None:
        return None
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(aside) + suffix))
    log.error(
        "queue file %s is damaged (%s); it was moved to %s and a new, empty queue was started. "
        "Frames in the damaged file were NOT sent; keep that file for recovery.",
        path, reason, aside,
    )
    return reason


class StoreError(TwinedgeError):
    """The queue file cannot be opened or written."""


@dataclass(frozen=True)
class StoredRow:
    seq: int
    device_id: str
    ts: float
    stored_at: float
    payload: bytes

    def frame_dict(self) -> dict[str, Any]:
        return dict(msgpack.unpackb(self.payload, raw=False))


@dataclass
class QueueStats:
    depth: int
    oldest_seq: int | None
    newest_seq: int | None
    oldest_stored_at: float | None
    used_bytes: int
    budget_bytes: int
    drops: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    quarantined: int = 0
    resets: int = 0

    def oldest_age(self, now: float | None = None) -> float | None:
        if self.oldest_stored_at is None:
            return None
        return max(0.0, (now or time.time()) - self.oldest_stored_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "oldest_seq": self.oldest_seq,
            "newest_seq": self.newest_seq,
            "oldest_age_s": self.oldest_age(),
            "used_bytes": self.used_bytes,
            "budget_bytes": self.budget_bytes,
            "drops": dict(self.drops),
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "store_resets": self.resets,
        }


class Store:
    """The queue file. One connection; all writes go through ``append`` and ``ack``."""

    def __init__(self, path: Path, config: StoreConfig) -> None:
        self.path = path
        self.config = config
        self._db: aiosqlite.Connection | None = None
        self._depth = 0
        self._counters: dict[str, int] = {}
        self._page_size = 4096
        # One connection serves every coroutine: transactions must not interleave.
        self._txn = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        reset_reason = await asyncio.to_thread(_set_aside_if_damaged, self.path)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        db = self._db
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA)
        async with db.execute("SELECT seq FROM sqlite_sequence WHERE name='frames'") as cur:
            started = await cur.fetchone()
        if started is None:
            # A fresh file: start above any sequence an earlier file can have used.
            start = int(time.time() * 1_000_000)
            await db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('frames', ?)", (start,))
        async with db.execute("PRAGMA page_size") as cur:
            row = await cur.fetchone()
            self._page_size = int(row[0]) if row else 4096
        async with db.execute("SELECT name, value FROM counters") as cur:
            self._counters = {name: int(value) for name, value in await cur.fetchall()}
        async with db.execute("SELECT COUNT(*) FROM frames") as cur:
            row = await cur.fetchone()
            self._depth = int(row[0]) if row else 0
        if reset_reason:
            await self._bump({"store_resets": 1})
        log.info("queue %s open: %d frames waiting", self.path, self._depth)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def depth(self) -> int:
        """Frames waiting in the queue (kept in memory; no COUNT(*) on a large table)."""
        return self._depth

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the queue is not open")
        return self._db

    # --- writes --------------------------------------------------------------

    async def append(self, frames: Sequence[TelemetryFrame]) -> int:
        """Store frames in one transaction; returns how many were new (duplicates are skipped)."""
        if not frames:
            return 0
        now = time.time()
        rows = [(f.device_id, f.ts, now, encode_frame(f)) for f in frames]
        if self.config.when_full == "drop_newest" and await self.used_bytes() >= self.config.disk_budget:
            await self._bump({"disk_budget_newest": len(rows)})
            log.warning("queue is at its disk budget; dropped %d new frames (policy drop_newest)", len(rows))
            return 0
        async with self._transaction(f"write {len(rows)} frames") as db:
            cur = await db.executemany(
                "INSERT OR IGNORE INTO frames(device_id, ts, stored_at, payload) VALUES (?, ?, ?, ?)", rows
            )
            inserted = cur.rowcount if cur.rowcount >= 0 else len(rows)
            if inserted < len(rows):
                await self._bump_in_txn({"duplicates": len(rows) - inserted})
        self._depth += inserted
        if self.config.when_full == "drop_oldest":
            await self._enforce_budget()
        return inserted

    @contextlib.asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time on the shared connection; SQLite errors become StoreError."""
        async with self._txn:
            db = self.db
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise StoreError(f"could not {what} in {self.path}: {exc}") from exc

    async def used_bytes(self) -> int:
        async with self.db.execute(
            "SELECT page_count - freelist_count FROM pragma_page_count(), pragma_freelist_count()"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0] if row else 0) * self._page_size

    async def _enforce_budget(self) -> None:
        used = await self.used_bytes()
        budget = self.config.disk_budget
        if used <= budget or self._depth == 0:
            return
        per_frame = max(1, used // max(1, self._depth))
        # Free down to 95% of the budget so that this does not run on every batch.
        excess = int((used - budget * 0.95) // per_frame) + 1
        excess = min(excess, self._depth)
        async with self._transaction("drop the oldest frames") as db:
            cur = await db.execute(
                "DELETE FROM frames WHERE seq IN (SELECT seq FROM frames ORDER BY seq LIMIT ?)", (excess,)
            )
            dropped = cur.rowcount
            await self._bump_in_txn({"disk_budget_oldest": dropped})
        self._depth -= dropped
        log.warning(
            "queue reached its disk budget of %d MB; dropped the %d oldest frames (policy drop_oldest)",
            budget // 1_000_000, dropped,
        )

    async def ack(self, through_seq: int, *, from_seq: int = 0) -> int:
        """Delete the frames with from_seq <= seq <= through_seq (the cloud has them). Returns rows deleted.

        ``from_seq`` matters when live data is sent ahead of a backlog: acknowledging
        a live batch must not delete the older frames that were not sent yet.
        """
        async with self._transaction("delete acknowledged frames") as db:
            cur = await db.execute("DELETE FROM frames WHERE seq BETWEEN ? AND ?", (from_seq, through_seq))
        deleted = cur.rowcount
        self._depth -= deleted
        return deleted

    async def quarantine(self, origin: str, reason: str, payload: bytes | None) -> None:
        """Keep refused input with its reason; the table is capped to the newest rows."""
        if payload is not None and len(payload) > QUARANTINE_MAX_PAYLOAD:
            payload = payload[:QUARANTINE_MAX_PAYLOAD]
        async with self._transaction("quarantine refused input") as db:
            await db.execute(
                "INSERT INTO quarantine(at, origin, reason, payload) VALUES (?, ?, ?, ?)",
                (time.time(), origin, reason[:2000], payload),
            )
            await db.execute(
                "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?", (QUARANTINE_MAX_ROWS,)
            )
            await self._bump_in_txn({"quarantined": 1})

    async def count_drops(self, reason: str, count: int) -> None:
        """Record frames lost before they reached the queue (counted, never silent)."""
        await self._bump({f"drop:{reason}": count})

    async def _bump(self, deltas: dict[str, int]) -> None:
        async with self._transaction("update counters"):
            await self._bump_in_txn(deltas)

    async def _bump_in_txn(self, deltas: dict[str, int]) -> None:
        await self.db.executemany(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            list(deltas.items()),
        )
        for name, delta in deltas.items():
            self._counters[name] = self._counters.get(name, 0) + delta

    # --- reads ---------------------------------------------------------------

    async def read(
        self, *, after_seq: int = 0, limit: int = 1000, max_bytes: int | None = None, through_seq: int | None = None
    ) -> list[StoredRow]:
        """The oldest frames with after_seq < seq <= through_seq, at most ``limit`` and about ``max_bytes``."""
        rows: list[StoredRow] = []
        total = 0
        async with self.db.execute(
            "SELECT seq, device_id, ts, stored_at, payload FROM frames WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after_seq, through_seq if through_seq is not None else 2**63 - 1, limit),
        ) as cur:
            async for seq, device_id, ts, stored_at, payload in cur:
                if max_bytes is not None and rows and total + len(payload) > max_bytes:
                    break
                rows.append(StoredRow(seq, device_id, ts, stored_at, bytes(payload)))
                total += len(payload)
        return rows

    async def newest_seq(self) -> int | None:
        async with self.db.execute("SELECT MAX(seq) FROM frames") as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def quarantined(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT id, at, origin, reason, length(payload) FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            return [
                {"id": i, "at": at, "origin": origin, "reason": reason, "bytes": size or 0}
                for i, at, origin, reason, size in await cur.fetchall()
            ]

    async def oldest(self) -> tuple[int, float] | None:
        """The sequence and store time of the oldest queued frame."""
        async with self.db.execute("SELECT seq, stored_at FROM frames ORDER BY seq LIMIT 1") as cur:
            row = await cur.fetchone()
        return (row[0], row[1]) if row else None

    @property
    def drops(self) -> dict[str, int]:
        """Frames dropped so far, by reason (kept in memory)."""
        return {k.split(":", 1)[1] if k.startswith("drop:") else k: v for k, v in self._counters.items()
                if k.startswith(("drop:", "disk_budget_"))}

    @property
    def quarantined_count(self) -> int:
        return self._counters.get("quarantined", 0)

    async def stats(self) -> QueueStats:
        oldest = await self.oldest()
        return QueueStats(
            depth=self._depth,
            oldest_seq=oldest[0] if oldest else None,
            newest_seq=await self.newest_seq(),
            oldest_stored_at=oldest[1] if oldest else None,
            used_bytes=await self.used_bytes(),
            budget_bytes=self.config.disk_budget,
            drops=self.drops,
            duplicates=self._counters.get("duplicates", 0),
            quarantined=self.quarantined_count,
            resets=self._counters.get("store_resets", 0),
        )
