"""The durable store-and-forward queue: SQLite in WAL mode through aiosqlite.

A frame is durable once the transaction that inserted it committed. Every stored
frame gets a per-edge sequence number that only grows (SQLite AUTOINCREMENT; a
fresh file starts at the current time in microseconds, so sequences stay above
those of a file that had to be set aside). Frames leave only when the cloud
acknowledged them (``ack``) or when the disk budget forces the configured policy,
and every such drop is counted by reason. The budget, capped by the free disk,
and the reserve that keeps deletes possible on a full disk live in
``edge.queuefiles``. Every SQLite or OS error becomes a ``StoreError`` that says
which file and what to do.

Model alerts live in the same file, in a table of their own (``edge.alertqueue``)
written in the same transaction as the frames they came with. They count in the
disk budget, but the budget's policies drop and refuse frames only: at the
budget, ``drop_oldest`` frees room from the oldest frames, and a batch whose
frames are refused (``drop_newest``, or no room even after dropping) still has
its alerts stored, as long as the disk takes them at all. Edge events
(``edge.eventqueue``) are kept the same way, in their own transactions.

A source that reads a sequenced input (an MTConnect agent) hands its frames
with the edge events and documents (``edge.documentqueue``) they come with and
its position in the input (the ``positions`` table, one row per key): ``append``
writes them all in one transaction, so that after a crash the position never
runs ahead of its data nor lags behind it. When the budget refuses the frames,
none of it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import msgpack

from edge import alertqueue, documentqueue, eventqueue
from edge.alertqueue import AlertRow, StoredAlert
from edge.config import StoreConfig
from edge.documentqueue import DocumentRow, StoredDocument
from edge.eventqueue import EventFilter, EventRow, StoredEvent
from edge.queuefiles import (
    HINT,
    DiskFull,
    DiskSpace,
    DiskUsage,
    FullReport,
    QueueFull,
    StoreError,
    prepare_files,
    set_aside_if_damaged,
)
from edge.queuestats import QueueStats
from edge.scored import ScoredFrames
from shared.batch import AlertEvent, Document, EdgeEvent
from shared.frame import TelemetryFrame

__all__ = ["DiskFull", "EventFilter", "QueueFull", "QueueStats", "Store", "StoreError", "StoredAlert",
           "StoredDocument", "StoredEvent", "StoredRow"]

log = logging.getLogger(__name__)
T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS positions (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL);
""" + alertqueue.ALERTS_SCHEMA + eventqueue.EVENTS_SCHEMA + documentqueue.DOCUMENTS_SCHEMA
QUARANTINE_MAX_ROWS = 2_000
QUARANTINE_MAX_PAYLOAD = 32 * 1024  # with the row cap: at most 64 MB, inside the disk budget
ROW_OVERHEAD = 80  # bytes a stored frame takes beyond its payload (row header, columns, identity index)
TXN_PAGES = 16  # pages a transaction rewrites beyond its rows' own (parents, index leaves, counters)
ROOM_AGAIN = 0.9  # "room again" once the queue is below this share of its budget
DROP_MARGIN = 0.05  # drop_oldest frees this share of the budget beyond what a batch needs
POSITION_ROW_OVERHEAD = 64


@dataclass(frozen=True)
class StoredRow:
    seq: int
    device_id: str
    ts: float
    stored_at: float
    payload: bytes

    def frame_dict(self) -> dict[str, Any]:
        return dict(msgpack.unpackb(self.payload, raw=False))


class Store:
    """The queue file. One connection; all writes go through ``append`` and ``ack``."""

    def __init__(self, path: Path, config: StoreConfig) -> None:
        self.path = path
        self.config = config
        self.disk = DiskSpace(path, config.disk_budget)
        self.report = FullReport(config.when_full)
        self._db: aiosqlite.Connection | None = None
        self._depth = 0
        self._alerts = 0  # alert events waiting, and about how many bytes they take (kept in memory)
        self._alert_bytes = 0
        self._events = self._events_unsynced = self._event_bytes = 0  # events kept, not synced yet, their bytes
        self._documents = self._document_bytes = 0  # documents waiting for the cloud, their bytes
        self._counters: dict[str, int] = {}
        self._unsaved: dict[str, int] = {}  # counted while the disk refused every write; saved with the next one
        self._txn_deltas: dict[str, int] = {}
        self._txn_alerts = (0, 0)  # alerts and bytes the open transaction adds (negative: deletes)
        self._txn_events = (0, 0, 0)  # events, of them unsynced, and bytes the open transaction adds
        self._txn_documents = (0, 0)  # documents and bytes the open transaction adds
        self._page_size = 4096
        # One connection serves every coroutine: transactions must not interleave.
        self._txn = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(prepare_files, self.path)
        reset_reason = await asyncio.to_thread(set_aside_if_damaged, self.path)
        try:
            await self._connect()
        except DiskFull:
            # Opening writes too (WAL recovery, the schema): give SQLite the reserve and try once more.
            await self.close()
            if not await asyncio.to_thread(self.disk.release_reserve):
                raise
            await self._connect()
        if reset_reason:
            await self._bump({"store_resets": 1})
        await asyncio.to_thread(self.disk.make_reserve)
        usage = await self.usage()
        log.info("queue %s open: %d frames and %d alerts waiting; %.1f MB of %s", self.path, self._depth,
                 self._alerts, usage.used / 1e6, usage.describe())
        if usage.capped:
            log.warning(
                "the queue's disk budget is %.0f MB but the filesystem under %s has only %.1f MB free: the queue "
                "will hold at most %.1f MB, then policy %s applies", usage.configured / 1e6, self.path.parent,
                usage.fs_free / 1e6, usage.budget / 1e6, self.config.when_full,
            )

    async def _connect(self) -> None:
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            db = self._db
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
            await db.execute("PRAGMA busy_timeout=5000")
            async with db.execute("PRAGMA page_size") as cur:
                row = await cur.fetchone()
                self._page_size = int(row[0]) if row else 4096
            # The WAL is checkpointed (and cut back) at the slack, so its size is known and bounded.
            slack = await asyncio.to_thread(self.disk.setup, self._page_size)
            await db.execute(f"PRAGMA wal_autocheckpoint={slack // self._page_size}")
            await db.execute(f"PRAGMA journal_size_limit={slack}")
            await db.executescript(SCHEMA)
            async with db.execute("SELECT seq FROM sqlite_sequence WHERE name='frames'") as cur:
                started = await cur.fetchone()
            if started is None:
                # A fresh file: start above any sequence an earlier file can have used.
                start = int(time.time() * 1_000_000)
                await db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('frames', ?)", (start,))
            await alertqueue.start_sequence(db)
            self._alerts, self._alert_bytes = await alertqueue.measure(db)
            await eventqueue.start_sequence(db)
            self._events, self._events_unsynced, self._event_bytes = await eventqueue.measure(db)
            await documentqueue.start_sequence(db)
            self._documents, self._document_bytes = await documentqueue.measure(db)
            async with db.execute("SELECT name, value FROM counters") as cur:
                self._counters = {name: int(value) for name, value in await cur.fetchall()}
            async with db.execute("SELECT COUNT(*) FROM frames") as cur:
                row = await cur.fetchone()
                self._depth = int(row[0]) if row else 0
        except sqlite3.Error as exc:
            await self.close()
            kind = DiskFull if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL else StoreError
            raise kind(f"cannot open the queue file {self.path}: {exc}; {HINT}") from None
        except OSError as exc:
            await self.close()
            raise StoreError(f"cannot open the queue file {self.path}: {exc.strerror or exc}; {HINT}") from None

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                await db.close()

    @property
    def depth(self) -> int:
        """Frames waiting in the queue (kept in memory; no COUNT(*) on a large table)."""
        return self._depth

    @property
    def alert_depth(self) -> int:
        """Alert events waiting for the cloud (kept in memory)."""
        return self._alerts

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the queue is not open")
        return self._db

    # --- the budget ------------------------------------------------------------

    async def usage(self) -> DiskUsage:
        """The queue's disk use now, against its budget capped by the free disk."""
        async with self._reading("measure the queue"):
            async with self.db.execute(
                "SELECT page_count - freelist_count FROM pragma_page_count(), pragma_freelist_count()"
            ) as cur:
                row = await cur.fetchone()
        try:
            return await asyncio.to_thread(self.disk.measure, int(row[0] if row else 0) * self._page_size)
        except OSError as exc:
            raise StoreError(f"cannot measure the disk under {self.path.parent}: {exc.strerror or exc}") from None

    async def _make_room(self, incoming: int) -> None:
        """Apply ``when_full`` before a batch of about ``incoming`` bytes is written; QueueFull if it cannot go in.

        A batch needs its room twice until the next checkpoint: in the WAL and in the file.
        """
        usage = await self.usage()
        need = usage.used + 2 * incoming
        if need <= usage.budget:
            if need <= usage.budget * ROOM_AGAIN:
                self.report.room_again(usage)
            if usage.reserve < self.disk.reserve_size and usage.fs_free >= self.disk.reserve_size + self.disk.headroom:
                await asyncio.to_thread(self.disk.make_reserve)
            return
        if self.config.when_full == "drop_newest":
            raise QueueFull(f"the queue is full ({usage.used / 1e6:.1f} MB of {usage.describe()}); policy "
                            "drop_newest refuses new frames", reason="disk_budget_newest")
        if usage.wal + self._alert_bytes + self._event_bytes + self._document_bytes + 2 * incoming > usage.budget:
            # Not even a queue without frames could take this batch: dropping the backlog would not help.
            if self._alert_bytes > usage.budget // 2:
                raise QueueFull(f"the queue is full ({usage.describe()}) and {self._alerts:,} alerts waiting for the "
                                f"cloud take {self._alert_bytes / 1e6:.1f} MB of it; alerts are kept, new frames "
                                "are refused", reason="disk_budget_alerts")
            raise QueueFull(f"the disk is full: {usage.describe()} cannot take {incoming / 1e6:.1f} MB",
                            reason="disk_full")
        await self._drop_oldest(need - int(usage.budget * (1 - DROP_MARGIN)), usage)

    async def _drop_oldest(self, excess: int, usage: DiskUsage) -> int:
        """Delete at least ``excess`` bytes of the oldest frames, in transactions the WAL can hold (never alerts)."""
        kept = self._alert_bytes + self._event_bytes + self._document_bytes
        per_frame = max(1, (usage.used - usage.wal - kept) // max(1, self._depth))
        wanted = min(self._depth, excess // per_frame + 1)
        chunk = max(1, self.disk.slack // per_frame)
        dropped = 0
        while dropped < wanted and self._depth > 0:
            n = min(chunk, wanted - dropped)

            async def delete(db: aiosqlite.Connection, n: int = n) -> int:
                cur = await db.execute(
                    "DELETE FROM frames WHERE seq IN (SELECT seq FROM frames ORDER BY seq LIMIT ?)", (n,)
                )
                await self._bump_in_txn({"disk_budget_oldest": cur.rowcount})
                return int(cur.rowcount)

            done = await self._write("drop the oldest frames", delete)
            self._depth -= done
            dropped += done
            if not done:
                break
        self.report.applied(usage, {"dropped_oldest": dropped}, self.drops)
        return dropped

    async def refused(self, reason: str, *, unacked: int, dropped: int, events_dropped: int = 0,
                      documents_dropped: int = 0) -> None:
        """Count frames the queue refused: ``unacked`` went back to callers that keep them, ``dropped`` are lost
        (and the edge events and documents that came with lost frames)."""
        deltas = {"refused_unacked": unacked, _counter(reason): dropped, f"event_drop:{reason}": events_dropped,
                  f"document_drop:{reason}": documents_dropped}
        await self._bump({k: v for k, v in deltas.items() if v})
        with contextlib.suppress(StoreError):
            self.report.applied(await self.usage(), {"unacked": unacked, "dropped_new": dropped}, self.drops)

    # --- writes --------------------------------------------------------------

    async def append(self, frames: Sequence[TelemetryFrame], *, alerts: Sequence[AlertEvent] = (),
                     events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                     positions: Mapping[str, str] | None = None) -> int:
        """Store frames with their alerts, edge events, documents and sources' positions in one transaction;
        returns how many frames were new (duplicates are skipped).

        Raises QueueFull when the frames cannot go in (policy drop_newest at the
        budget, or a disk with no room even after dropping the oldest frames);
        no frame, event, document or position is stored or counted then: the
        caller decides (see ``refused``). The alerts are stored even then, in a
        transaction of their own, while the disk takes them at all; alerts it
        cannot take are counted and logged. Without frames, the rest goes in at the
        budget (the oldest frames make room) and is refused only by a full disk.
        """
        positions = dict(positions or {})
        if not frames and not alerts and not events and not documents and not positions:
            return 0
        now = time.time()
        if isinstance(frames, ScoredFrames):  # the scores are merged into the encoded frames, not copied in
            rows = [(f.device_id, f.ts, now, payload) for f, payload in zip(frames.frames, frames.encoded(),
                                                                            strict=True)]
        else:
            pack = msgpack.Packer(use_bin_type=True).pack  # encode_frame's bytes; one packer for the batch
            rows = [(f.device_id, f.ts, now, pack(f.to_wire())) for f in frames]
        alert_rows = alertqueue.alert_rows(alerts, now)
        event_rows = eventqueue.event_rows(events, now)
        doc_rows = documentqueue.document_rows(documents, now)
        incoming = (sum(len(r[3]) + ROW_OVERHEAD for r in rows) + alertqueue.row_bytes(alert_rows)
                    + eventqueue.row_bytes(event_rows) + documentqueue.row_bytes(doc_rows)
                    + sum(len(k) + len(v) + POSITION_ROW_OVERHEAD for k, v in positions.items())
                    + TXN_PAGES * self._page_size)

        async def insert(db: aiosqlite.Connection) -> int:
            inserted = 0
            if rows:
                cur = await db.executemany(
                    "INSERT OR IGNORE INTO frames(device_id, ts, stored_at, payload) VALUES (?, ?, ?, ?)", rows
                )
                inserted = cur.rowcount if cur.rowcount >= 0 else len(rows)
                if inserted < len(rows):
                    await self._bump_in_txn({"duplicates": len(rows) - inserted})
            if alert_rows:
                await self._insert_alerts(db, alert_rows)
            if event_rows:
                await self._insert_events(db, event_rows, frames_waiting=self._depth + inserted)
            if doc_rows:
                await self._insert_documents(db, doc_rows)
            if positions:
                await db.executemany(
                    "INSERT INTO positions(key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) "
                    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    [(k, v, now) for k, v in positions.items()],
                )
            return int(inserted)

        if not rows:
            with contextlib.suppress(QueueFull):  # alerts, events and documents go in at the budget
                await self._make_room(incoming)
            if not (event_rows or doc_rows or positions):
                await self._alerts_alone(alert_rows, insert)
                return 0
            try:
                await self._write("write events, documents and positions", insert)
            except DiskFull as exc:
                await self._alerts_alone(alert_rows, functools.partial(self._insert_alerts, rows=alert_rows))
                raise QueueFull(f"the disk is full ({exc})", reason="disk_full") from None
            return 0
        try:
            await self._make_room(incoming)
            inserted = await self._write_or_drop(len(rows), incoming, insert)
        except QueueFull:
            await self._alerts_alone(alert_rows, functools.partial(self._insert_alerts, rows=alert_rows))
            raise
        self._depth += inserted
        return inserted

    async def _write_or_drop(self, n: int, incoming: int, insert: Callable[[aiosqlite.Connection], Awaitable[int]]
                             ) -> int:
        """Write a batch of ``n`` frames; when something else filled the disk, apply the policy and try again."""
        try:
            return await self._write(f"write {n} frames", insert)
        except DiskFull as exc:
            # Something else filled the disk: apply the policy now instead of retrying the same write.
            usage = await self.usage()
            if self.config.when_full == "drop_newest" or not self._depth:
                raise QueueFull(f"the disk is full ({exc})", reason="disk_full") from None
            await self._drop_oldest(incoming + self.disk.headroom, usage)
            try:
                return await self._write(f"write {n} frames", insert)
            except DiskFull:
                raise QueueFull(f"the disk is full ({exc})", reason="disk_full") from None

    async def _alerts_alone(self, rows: list[AlertRow], insert: Callable[[aiosqlite.Connection], Awaitable[object]]
                            ) -> None:
        """Store alerts without frames; on a disk that takes nothing at all, count and log them as lost."""
        if not rows:
            return
        try:
            await self._write(f"write {len(rows)} alerts", insert)
        except DiskFull as exc:
            await self._bump({"alert_drop:disk_full": len(rows)})
            log.error("%d model alerts could not be stored and are lost: %s", len(rows), exc)

    async def _insert_alerts(self, db: aiosqlite.Connection, rows: list[AlertRow]) -> None:
        """Insert alerts in the current transaction; past ``store.alerts_max`` the oldest go (counted)."""
        inserted, size = await alertqueue.insert(db, rows)
        over = self._alerts + self._txn_alerts[0] + inserted - self.config.alerts_max
        dropped = dropped_size = 0
        if over > 0:
            dropped, dropped_size = await alertqueue.delete_oldest(db, over)
            await self._bump_in_txn({"alert_drop:over_cap": dropped})
        self._txn_alerts = (self._txn_alerts[0] + inserted - dropped, self._txn_alerts[1] + size - dropped_size)
        if inserted < len(rows):
            await self._bump_in_txn({"alert_duplicates": len(rows) - inserted})
        if dropped:
            log.warning("more than %d model alerts are waiting for the cloud (store.alerts_max); the %d oldest "
                        "were dropped", self.config.alerts_max, dropped)

    async def append_events(self, events: Sequence[EdgeEvent]) -> None:
        """Store edge events in one transaction. The disk budget makes room from the oldest frames (never refuses
        events); past ``store.events_max`` the oldest events the cloud has go, and those it lacks only once no
        frame waits (counted). On a disk that
        takes nothing at all they are counted and logged as lost."""
        if not events:
            return
        rows = eventqueue.event_rows(events)
        with contextlib.suppress(QueueFull):
            await self._make_room(eventqueue.row_bytes(rows) + TXN_PAGES * self._page_size)
        try:
            await self._write(f"write {len(rows)} events",
                              functools.partial(self._insert_events, rows=rows, frames_waiting=self._depth))
        except DiskFull as exc:
            await self._bump({"event_drop:disk_full": len(rows)})
            log.error("%d edge events could not be stored and are lost: %s", len(rows), exc)

    async def _insert_events(self, db: aiosqlite.Connection, rows: list[EventRow], *, frames_waiting: int) -> None:
        """Insert events in the current transaction; past ``store.events_max`` the oldest go (see append_events)."""
        await eventqueue.insert(db, rows)
        kept, unsynced_kept, size_kept = self._txn_events
        over = self._events + kept + len(rows) - self.config.events_max
        dropped = unsynced = size = 0
        if over > 0:
            # Never before telemetry: an event the cloud lacks goes only once no frame waits.
            dropped, unsynced, size = await eventqueue.delete_oldest(db, over, unsynced_too=frames_waiting == 0)
            if unsynced:
                await self._bump_in_txn({"event_drop:over_cap": unsynced})
                log.warning("more than %d edge events are kept (store.events_max); %d the cloud did not have yet "
                            "were dropped", self.config.events_max, unsynced)
        self._txn_events = (kept + len(rows) - dropped, unsynced_kept + len(rows) - unsynced,
                            size_kept + eventqueue.row_bytes(rows) - size)

    async def _insert_documents(self, db: aiosqlite.Connection, rows: list[DocumentRow]) -> None:
        """Insert documents in the current transaction; past ``store.documents_max`` the oldest go (counted)."""
        await documentqueue.insert(db, rows)
        kept, size_kept = self._txn_documents
        over = self._documents + kept + len(rows) - self.config.documents_max
        dropped = size = 0
        if over > 0:
            dropped, size = await documentqueue.delete_oldest(db, over)
            await self._bump_in_txn({"document_drop:over_cap": dropped})
            log.warning("more than %d documents are waiting for the cloud (store.documents_max); the %d oldest "
                        "were dropped", self.config.documents_max, dropped)
        over_bytes = (self._document_bytes + size_kept + documentqueue.row_bytes(rows) - size
                      - int(self.config.documents_max_bytes))
        if over_bytes > 0:
            more, more_size = await documentqueue.delete_oldest_bytes(db, over_bytes)
            await self._bump_in_txn({"document_drop:over_bytes": more})
            log.warning("more than %.1f MB of documents are waiting for the cloud (store.documents_max_bytes); the %d "
                        "oldest were dropped", self.config.documents_max_bytes / 1e6, more)
            dropped, size = dropped + more, size + more_size
        self._txn_documents = (kept + len(rows) - dropped, size_kept + documentqueue.row_bytes(rows) - size)

    async def ack_events(self, through_seq: int) -> int:
        """Mark the events with seq <= through_seq as synced (the cloud has them); they stay for `twinedge events`."""
        done = await self._write("mark events synced", functools.partial(eventqueue.mark_synced,
                                                                           through_seq=through_seq))
        self._events_unsynced = max(0, self._events_unsynced - done)
        return done

    async def ack_documents(self, through_seq: int) -> int:
        """Delete the documents with seq <= through_seq (the cloud keeps them). Returns how many were deleted."""
        async def delete(db: aiosqlite.Connection) -> int:
            deleted, size = await documentqueue.delete_through(db, through_seq)
            self._txn_documents = (-deleted, -size)
            return deleted

        return await self._write("delete acknowledged documents", delete)

    async def _write(self, what: str, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``body`` in a transaction; on a full disk release the reserve, checkpoint, and try once more."""
        try:
            async with self._transaction(what) as db:
                return await body(db)
        except DiskFull:
            await asyncio.to_thread(self.disk.release_reserve)
            with contextlib.suppress(sqlite3.Error):
                await self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        async with self._transaction(what) as db:
            return await body(db)

    @contextlib.asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time on the shared connection; SQLite errors become StoreError.

        Counter changes made inside count in memory only once the transaction committed.
        """
        async with self._txn:
            db = self.db
            self._txn_deltas = {}
            self._txn_alerts = (0, 0)
            self._txn_events = (0, 0, 0)
            self._txn_documents = (0, 0)
            unsaved = dict(self._unsaved)
            try:
                await db.execute("BEGIN IMMEDIATE")
                if unsaved:
                    await self._save_counters(unsaved)
                yield db
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                kind = DiskFull if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL else StoreError
                raise kind(f"could not {what} in {self.path}: {exc}") from exc
            except BaseException:
                # Cancelled (or a bug) mid-transaction: leave the connection usable for the next one.
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise
            for name, delta in unsaved.items():
                self._unsaved[name] -= delta
                if not self._unsaved[name]:
                    del self._unsaved[name]
            for name, delta in self._txn_deltas.items():
                self._counters[name] = self._counters.get(name, 0) + delta
            self._alerts += self._txn_alerts[0]
            self._alert_bytes = max(0, self._alert_bytes + self._txn_alerts[1])
            self._events += self._txn_events[0]
            self._events_unsynced = max(0, self._events_unsynced + self._txn_events[1])
            self._event_bytes = max(0, self._event_bytes + self._txn_events[2])
            self._documents += self._txn_documents[0]
            self._document_bytes = max(0, self._document_bytes + self._txn_documents[1])

    async def ack(self, through_seq: int, *, from_seq: int = 0, sent: int | None = None) -> int:
        """Delete the frames with from_seq <= seq <= through_seq (the cloud has them). Returns rows deleted.

        ``from_seq`` matters when live data is sent ahead of a backlog: acknowledging
        a live batch must not delete the older frames that were not sent yet.
        ``sent``: how many frames of that range the uplink delivered. Frames it
        delivered that are no longer here were dropped (drop_oldest) while in
        flight: they were delivered after all, so they are taken off the drop count.
        """
        async def delete(db: aiosqlite.Connection, limit: int = -1) -> int:
            cur = await db.execute(
                "DELETE FROM frames WHERE seq IN (SELECT seq FROM frames WHERE seq BETWEEN ? AND ? LIMIT ?)",
                (from_seq, through_seq, limit),
            ) if limit > 0 else await db.execute(
                "DELETE FROM frames WHERE seq BETWEEN ? AND ?", (from_seq, through_seq)
            )
            return int(cur.rowcount)

        try:
            deleted = await self._write("delete acknowledged frames", delete)
            self._depth -= deleted
        except DiskFull:
            # A full disk, and the WAL cannot take the whole delete at once: in pieces it can take.
            usage = await self.usage()
            piece = max(1, self.disk.slack // 2 // max(1, (usage.used - usage.wal) // max(1, self._depth)))
            deleted = 0
            while done := await self._write("delete acknowledged frames", functools.partial(delete, limit=piece)):
                deleted += done
                self._depth -= done
        delivered_anyway = min((sent or 0) - deleted, self._counters.get("disk_budget_oldest", 0))
        if delivered_anyway > 0:
            await self._bump({"disk_budget_oldest": -delivered_anyway})
        return deleted

    async def ack_alerts(self, through_seq: int) -> int:
        """Delete the alerts with seq <= through_seq (the cloud has them). Returns how many were deleted."""
        async def delete(db: aiosqlite.Connection) -> int:
            deleted, size = await alertqueue.delete_through(db, through_seq)
            self._txn_alerts = (-deleted, -size)
            return deleted

        return await self._write("delete acknowledged alerts", delete)

    async def quarantine(self, origin: str, reason: str, payload: bytes | None) -> None:
        """Keep refused input with its reason; the table is capped to the newest rows."""
        if payload is not None and len(payload) > QUARANTINE_MAX_PAYLOAD:
            payload = payload[:QUARANTINE_MAX_PAYLOAD]

        async def insert(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO quarantine(at, origin, reason, payload) VALUES (?, ?, ?, ?)",
                (time.time(), origin, reason[:2000], payload),
            )
            await db.execute(
                "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?", (QUARANTINE_MAX_ROWS,)
            )
            await self._bump_in_txn({"quarantined": 1})

        await self._write("quarantine refused input", insert)

    async def _bump(self, deltas: dict[str, int]) -> None:
        """Count now; write the counters with this transaction, or with the next one the disk lets through."""
        try:
            async with self._transaction("update counters"):
                await self._bump_in_txn(deltas)
        except StoreError as exc:
            log.debug("counters kept in memory until the next write: %s", exc)
            for name, delta in deltas.items():
                self._counters[name] = self._counters.get(name, 0) + delta
                self._unsaved[name] = self._unsaved.get(name, 0) + delta

    async def _bump_in_txn(self, deltas: dict[str, int]) -> None:
        await self._save_counters(deltas)
        for name, delta in deltas.items():
            self._txn_deltas[name] = self._txn_deltas.get(name, 0) + delta

    async def _save_counters(self, deltas: dict[str, int]) -> None:
        await self.db.executemany(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            list(deltas.items()),
        )

    # --- reads ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reading(self, what: str) -> AsyncIterator[None]:
        """A read between write transactions; SQLite errors become StoreError with the file's name.

        Reads share the writer's connection, on which a transaction spans several awaits: a read in
        between would see rows not committed yet, and the uplink could send frames that a rollback
        (a full disk at COMMIT) then takes back, with their sequence numbers given out again.
        """
        async with self._txn:
            try:
                yield
            except sqlite3.Error as exc:
                raise StoreError(f"could not {what} in {self.path}: {exc}; {HINT}") from exc

    async def read(
        self, *, after_seq: int = 0, limit: int = 1000, max_bytes: int | None = None, through_seq: int | None = None
    ) -> list[StoredRow]:
        """The oldest frames with after_seq < seq <= through_seq, at most ``limit`` and about ``max_bytes``."""
        rows: list[StoredRow] = []
        total = 0
        async with self._reading("read queued frames"), self.db.execute(
            "SELECT seq, device_id, ts, stored_at, payload FROM frames WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after_seq, through_seq if through_seq is not None else 2**63 - 1, limit),
        ) as cur:
            async for seq, device_id, ts, stored_at, payload in cur:
                if max_bytes is not None and rows and total + len(payload) > max_bytes:
                    break
                rows.append(StoredRow(seq, device_id, ts, stored_at, bytes(payload)))
                total += len(payload)
        return rows

    async def read_alerts(self, *, after_seq: int = 0, limit: int = 500) -> list[StoredAlert]:
        """The oldest alerts waiting with seq > after_seq, in sequence order, at most ``limit``."""
        async with self._reading("read queued alerts"):
            return await alertqueue.read(self.db, after_seq, limit)

    async def read_events(self, *, after_seq: int = 0, limit: int = 500) -> list[StoredEvent]:
        """The oldest events the cloud does not have yet with seq > after_seq, in sequence order."""
        async with self._reading("read queued events"):
            return await eventqueue.read_unsynced(self.db, after_seq, limit)

    async def read_documents(self, *, after_seq: int = 0, limit: int = 100) -> list[StoredDocument]:
        """The oldest documents waiting with seq > after_seq, in sequence order, at most ``limit``."""
        async with self._reading("read queued documents"):
            return await documentqueue.read(self.db, after_seq, limit)

    async def position(self, key: str) -> str | None:
        """The last committed position under ``key`` (a source's place in its input), or None."""
        async with self._reading("read a source's position"), self.db.execute(
            "SELECT value FROM positions WHERE key = ?", (key,)
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def recent_events(self, which: EventFilter) -> list[StoredEvent]:
        """The newest events that pass ``which`` (synced or not), oldest first."""
        async with self._reading("read events"):
            return await eventqueue.read_recent(self.db, which)

    async def newest_seq(self) -> int | None:
        async with self._reading("read the newest sequence"), self.db.execute("SELECT MAX(seq) FROM frames") as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def quarantined(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self._reading("read the quarantine"), self.db.execute(
            "SELECT id, at, origin, reason, length(payload) FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            return [
                {"id": i, "at": at, "origin": origin, "reason": reason, "bytes": size or 0}
                for i, at, origin, reason, size in await cur.fetchall()
            ]

    async def oldest(self) -> tuple[int, float] | None:
        """The sequence and store time of the oldest queued frame."""
        async with self._reading("read the oldest frame"), self.db.execute(
            "SELECT seq, stored_at FROM frames ORDER BY seq LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        return (row[0], row[1]) if row else None

    @property
    def drops(self) -> dict[str, int]:
        """Frames dropped so far, by reason (kept in memory)."""
        return {k.split(":", 1)[1] if k.startswith("drop:") else k: v for k, v in self._counters.items()
                if k.startswith(("drop:", "disk_budget_"))}

    @property
    def alert_drops(self) -> dict[str, int]:
        """Alert events dropped so far, by reason: ``over_cap`` (the table's row cap), ``disk_full``."""
        return {k.split(":", 1)[1]: v for k, v in self._counters.items() if k.startswith("alert_drop:") and v}

    @property
    def event_depth(self) -> int:
        """Edge events waiting for the cloud (kept in memory)."""
        return self._events_unsynced

    @property
    def event_drops(self) -> dict[str, int]:
        """Edge events dropped before the cloud had them, by reason: ``over_cap``, ``disk_full``."""
        return {k.split(":", 1)[1]: v for k, v in self._counters.items() if k.startswith("event_drop:") and v}

    @property
    def document_depth(self) -> int:
        """Documents waiting for the cloud (kept in memory)."""
        return self._documents

    @property
    def document_drops(self) -> dict[str, int]:
        """Documents dropped before the cloud had them, by reason: ``over_cap``, ``disk_full``, ..."""
        return {k.split(":", 1)[1]: v for k, v in self._counters.items() if k.startswith("document_drop:") and v}

    @property
    def quarantined_count(self) -> int:
        return self._counters.get("quarantined", 0)

    async def stats(self) -> QueueStats:
        oldest = await self.oldest()
        async with self._reading("read the oldest alert"):
            oldest_alert = await alertqueue.oldest(self.db)
        return QueueStats(
            depth=self._depth,
            oldest_seq=oldest[0] if oldest else None,
            newest_seq=await self.newest_seq(),
            oldest_stored_at=oldest[1] if oldest else None,
            disk=await self.usage(),
            full=self.report.is_full(),
            policy=self.config.when_full,
            drops=self.drops,
            refused_unacked=self._counters.get("refused_unacked", 0),
            duplicates=self._counters.get("duplicates", 0),
            quarantined=self.quarantined_count,
            resets=self._counters.get("store_resets", 0),
            alerts=self._alerts,
            oldest_alert_stored_at=oldest_alert[1] if oldest_alert else None,
            alert_drops=self.alert_drops,
            events=self._events_unsynced,
            event_drops=self.event_drops,
            documents=self._documents,
            document_drops=self.document_drops,
        )


def _counter(reason: str) -> str:
    """The counter a drop reason is kept under (the budget policies keep their historical names)."""
    return reason if reason.startswith("disk_budget_") else f"drop:{reason}"
