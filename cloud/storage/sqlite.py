"""SQLite storage: the embedded default. One file, WAL, zero setup.

All writes go through one dedicated thread with its own connection (SQLite
allows one writer at a time; several processes on one machine still work, the
busy timeout makes them take turns). Reads never wait for the writer thanks
to WAL. Short reads of bounded size (a device's series, a history page, a
token) run on the event loop's own connection: they take from microseconds to
a few milliseconds, and a thread costs more than that, because Python's sqlite3
lets go of the GIL for every row it steps, so a 1,000-row read in a thread
hands the GIL back and forth with the busy event loop a thousand times
(3.8 ms of CPU per 1,000-point history request against 1.0 ms on the loop; see
docs/PERFORMANCE.md). So do the reads of an aggregate of a few thousand rows
(rollups, and the raw points at the ends of its range). Reads of unbounded
cost (large aggregates, listings, retention) run on a small pool of threads,
each with its own connection.
``synchronous = FULL`` (the default) syncs the WAL at every commit, so a batch
the edge was told is stored survives a power cut; a batch is one commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, repeat
from pathlib import Path
from typing import Any, TypeVar

from cloud.documents import DocumentIn
from cloud.migrations import MIGRATIONS
from cloud.storage import derived as process
from cloud.storage import sessions
from cloud.storage import sqlite_registry as ml
from cloud.storage import sqlite_sql as q
from cloud.storage.base import (
    AssemblyRecord,
    AssemblySummary,
    DeviceExists,
    DeviceMove,
    DeviceRecord,
    EdgeRecord,
    Ingested,
    Principal,
    Readings,
    RollupRow,
    SampleRows,
    SeriesInfo,
    Storage,
    StorageError,
    StorageUnavailable,
    UnknownDevice,
    build_rows,
    field_kinds,
    frame_columns,
    split_owned,
)
from cloud.storage.documents import purge_documents_sqlite, store_documents_sqlite
from cloud.storage.events import (
    EdgeEventIn,
    EventQuery,
    EventRecord,
    events_sqlite,
    purge_events_sqlite,
    store_events_sqlite,
)
from cloud.storage.registry import (
    AlertEventIn,
    AlertQuery,
    AlertRecord,
    Assignment,
    AssignmentChange,
    MlCounts,
    ModelReportRow,
    ModelVersion,
    NewModel,
)
from cloud.storage.rollups import Partial, rollup_spans, rows_to_store
from cloud.storage.sessions import SessionRecord
from shared.batch import EdgeHealth
from shared.frame import TelemetryFrame

__all__ = ["SQLiteStorage"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SCAN_NOW_ROWS = 10_001  # a history page (at most 10,000 points, and one more to see whether there are more)
AGG_NOW_ROWS = 5_000  # rows of an aggregate read on the loop (a few ms at most); larger reads go to a thread


class SQLiteStorage(Storage):
    backend = "sqlite"

    def __init__(self, path: str | Path, *, readers: int = 4, busy_timeout: float = 10.0,
                 synchronous: str = "full") -> None:
        super().__init__()
        self.path = Path(path)
        self._synchronous = {"full": "FULL", "normal": "NORMAL"}[synchronous]
        self._busy_ms = int(busy_timeout * 1000)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._now = threading.local()  # the connection of short reads, one per event loop thread
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}
        self._derived_series: dict[tuple[str, str], int] = {}  # (device, field) -> series id of derived values

    # --- connections -----------------------------------------------------------------
    def _connect(self, busy_ms: int | None = None) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            con.execute(f"PRAGMA busy_timeout = {self._busy_ms if busy_ms is None else busy_ms}")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute(f"PRAGMA synchronous = {self._synchronous}")
            con.execute("PRAGMA cache_size = -32000")
        except sqlite3.Error:
            con.close()
            raise
        with self._lock:
            self._all.append(con)
        return con

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def _call(self, con: Callable[[], sqlite3.Connection], fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(con(), *args)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StorageUnavailable(f"SQLite database {self.path} is busy: {exc}") from None
            raise StorageError(f"SQLite database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"SQLite database {self.path}: {exc}") from None

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, lambda: self._call(self._con, fn, *args))

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._writer, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._readers, fn, *args)

    def _read_now(self, fn: Callable[..., T], *args: Any) -> T:
        """A short read of bounded size on the event loop's own connection (see the module doc). It waits
        at most 100 ms for a lock, so that a database locked by another program cannot stall the loop."""
        return self._call(self._loop_connection, fn, *args)

    def _loop_connection(self) -> sqlite3.Connection:
        con = getattr(self._now, "con", None)
        if con is None:
            con = self._now.con = self._connect(busy_ms=min(self._busy_ms, 100))
        return con

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the directory of SQLite database {self.path}: "
                               f"{exc.strerror or exc}") from None
        applied = await self._write(_migrate)
        if applied:
            log.info("SQLite database %s migrated to schema version %d", self.path, applied[-1])

    async def close(self) -> None:
        def close_all() -> None:
            with self._lock:
                for con in self._all:
                    con.close()
                self._all.clear()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self._now = threading.local()
        await asyncio.to_thread(close_all)

    async def ping(self) -> None:
        await self._read(lambda con: con.execute("SELECT 1").fetchone())

    async def schema_version(self) -> int:
        return await self._read(lambda con: con.execute(q.VERSION).fetchone()[0] or 0)

    # --- ingest ----------------------------------------------------------------------
    async def _ingest(self, edge: str, readings: Readings, health: EdgeHealth | None,
                      now_us: int, last_seq: int | None, rejected: int, received: int,
                      clock_skew_s: float | None, check_owner: bool, alerts: Sequence[AlertEventIn],
                      reports: Sequence[ModelReportRow] | None, events: Sequence[EdgeEventIn] = (),
                     documents: Sequence[DocumentIn] = ()) -> Ingested:
        return await self._write(self._ingest_sync, edge, readings, health, now_us, last_seq, rejected, received,
                                 clock_skew_s, check_owner, alerts, reports, events, documents)

    def _ingest_sync(self, con: sqlite3.Connection, edge: str, readings: Readings, health: EdgeHealth | None,
                     now_us: int, last_seq: int | None, rejected: int, received: int,
                     clock_skew_s: float | None, check_owner: bool, alerts: Sequence[AlertEventIn],
                     reports: Sequence[ModelReportRow] | None, events: Sequence[EdgeEventIn] = (),
                     documents: Sequence[DocumentIn] = ()) -> Ingested:
        new_series: dict[tuple[str, str], int] = {}
        con.execute("BEGIN IMMEDIATE")
        try:
            devices, owners = _claim_devices(con, edge if check_owner else None,
                                             {f.device_id for f in readings.frames} | {a.device for a in alerts},
                                             now_us)
            owned, others = split_owned(readings, edge, owners) if check_owner else (readings, {})
            new_alerts = ml.store_alerts(con, edge, [a for a in alerts if a.device not in others], now_us)
            if reports is not None:
                ml.store_reports(con, edge, reports)
            store_events_sqlite(con, edge, events, now_us)
            store_documents_sqlite(con, edge, documents, now_us)
            refused, readings = len(readings) - len(owned), owned  # frames of devices of other edges
            ids = [devices[f.device_id] for f in readings.frames]
            stored, stamps = _insert_frames(con, edge, readings, ids)
            columns = frame_columns(stored, stamps)
            if {(c.device, c.field) for c in columns} - self._series.keys():
                for key, kind in field_kinds(stored).items():
                    if key not in self._series:
                        con.execute(q.INSERT_SERIES, (devices[key[0]], key[1], kind))
                        new_series[key] = con.execute(q.SERIES_ID, (devices[key[0]], key[1])).fetchone()[0]
            rows = build_rows(columns, self._series | new_series if new_series else self._series)
            insert_samples(con, rows)
            latest: dict[str, tuple[int, TelemetryFrame]] = {}
            for frame, ts in zip(stored, stamps, strict=True):
                have = latest.get(frame.device_id)
                if have is None or have[0] < ts:
                    latest[frame.device_id] = (ts, frame)
            con.executemany(q.UPDATE_DEVICE_LAST, [
                (ts, f.status, edge, devices[d], ts) for d, (ts, f) in latest.items()])
            _record_edge(con, edge, health, now_us, last_seq, len(stored), received - len(stored) - refused,
                         rejected + refused, clock_skew_s)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:  # SQLite may have rolled back by itself (disk full, I/O error)
                con.execute("ROLLBACK")
            raise
        self._series.update(new_series)
        return stored, len(rows), others, new_alerts

    # --- identities ------------------------------------------------------------------
    async def create_identity(self, kind: str, name: str, role: str, token_hash: str, now_us: int) -> bool:
        def run(con: sqlite3.Connection) -> bool:
            try:
                con.execute(q.INSERT_IDENTITY, (kind, name, role, token_hash, now_us))
            except sqlite3.IntegrityError:
                return False
            return True
        return await self._write(run)

    async def set_role(self, name: str, role: str) -> bool:
        return await self._write(lambda con: con.execute(q.SET_ROLE, (role, name)).rowcount == 1)

    async def set_token(self, kind: str, name: str, token_hash: str) -> bool:
        return await self._write(lambda con: con.execute(q.SET_TOKEN, (token_hash, kind, name)).rowcount == 1)

    async def revoke(self, kind: str, name: str, now_us: int) -> bool:
        return await self._write(lambda con: con.execute(q.REVOKE, (now_us, kind, name)).rowcount == 1)

    async def principal(self, token_hash: str) -> Principal | None:
        row = self._read_now(lambda con: con.execute(q.PRINCIPAL, (token_hash,)).fetchone())
        return Principal(row[0], row[1], row[2]) if row else None

    async def identities(self, kind: str) -> list[dict[str, Any]]:
        rows = await self._read(lambda con: con.execute(q.IDENTITIES, (kind,)).fetchall())
        return [{"name": r[0], "role": r[1], "created_at": r[2], "revoked_at": r[3]} for r in rows]

    async def identity_rows(self) -> list[tuple[str, str, str, str | None, int, int | None]]:
        sql = "SELECT kind, name, role, token_hash, created_at, revoked_at FROM identities ORDER BY id"
        return await self._read(lambda con: con.execute(sql).fetchall())

    async def edges(self) -> list[EdgeRecord]:
        rows = await self._read(lambda con: con.execute(q.EDGES).fetchall())
        return [EdgeRecord(r[0], r[1], r[2] is not None, r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"),
                           r[8], json.loads(r[9] or "{}"), r[10] or 0, r[11] or 0, r[12] or 0, r[13]) for r in rows]

    # --- console sessions --------------------------------------------------------------
    async def create_session(self, session_hash: str, token_hash: str, csrf: str, now_us: int) -> None:
        await self._write(lambda con: con.execute(sessions.CREATE, (session_hash, token_hash, csrf, now_us, now_us)))

    async def session(self, session_hash: str, seen_after: int, created_after: int) -> SessionRecord | None:
        return sessions.record(self._read_now(
            lambda con: con.execute(sessions.FIND, (session_hash, seen_after, created_after)).fetchone()))

    async def touch_session(self, session_hash: str, now_us: int, unless_after: int) -> None:
        await self._write(lambda con: con.execute(sessions.TOUCH, (now_us, session_hash, unless_after)))

    async def end_session(self, session_hash: str) -> bool:
        return await self._write(lambda con: con.execute(sessions.END, (session_hash,)).rowcount == 1)

    async def purge_sessions(self, seen_before: int, created_before: int) -> int:
        return await self._write(lambda con: con.execute(sessions.PURGE, (seen_before, created_before)).rowcount)

    # --- device owners ---------------------------------------------------------------
    async def device_records(self) -> list[DeviceRecord]:
        return await self._read(lambda con: [DeviceRecord(*r) for r in con.execute(q.DEVICE_RECORDS)])

    async def bind_device(self, device: str, edge: str, by: str, reason: str, now_us: int, *,
                          create: bool) -> DeviceMove | None:
        return await self._write(_bind, device, edge, by, reason, now_us, create)

    async def device_moves(self, device: str, limit: int) -> list[DeviceMove]:
        def run(con: sqlite3.Connection) -> list[DeviceMove]:
            row = con.execute(q.DEVICE_OWNER, (device,)).fetchone()
            if row is None:
                raise UnknownDevice(f"no device named {device!r}", "name")
            return [DeviceMove(device, *r) for r in reversed(con.execute(q.MOVES, (row[0], limit)).fetchall())]
        return await self._read(run)

    # --- queries ---------------------------------------------------------------------
    async def devices(self) -> list[str]:
        return await self._read(lambda con: [r[0] for r in con.execute(q.DEVICES)])

    async def device(self, name: str) -> tuple[int, int | None, str | None, str | None] | None:
        return self._read_now(lambda con: con.execute(q.DEVICE, (name,)).fetchone())

    async def lookup(self, name: str) -> tuple[tuple[int, int | None, str | None, str | None],
                                               list[SeriesInfo]] | None:
        def run(con: sqlite3.Connection) -> tuple[Any, list[SeriesInfo]] | None:
            row = con.execute(q.DEVICE, (name,)).fetchone()
            if row is None:
                return None
            return row, [SeriesInfo(*r) for r in con.execute(q.SERIES, (row[0],))]
        return self._read_now(run)

    async def statuses(self, device_id: int, after: int, upto: int) -> dict[int, str]:
        sql = "SELECT ts, status FROM frames WHERE device_id = ? AND ts > ? AND ts <= ?"
        return await self._read(lambda con: dict(con.execute(sql, (device_id, after, upto)).fetchall()))

    async def scan(self, series_id: int, start: int, stop: int, limit: int) -> list[tuple[int, float | str | None]]:
        if limit > SCAN_NOW_ROWS:
            return await self._read(lambda con: con.execute(q.SCAN, (series_id, start, stop, limit)).fetchall())
        return self._read_now(lambda con: con.execute(q.SCAN, (series_id, start, stop, limit)).fetchall())

    async def raw_rows(self, series_ids: list[int], ranges: list[tuple[int, int]]) -> list[tuple[int, int, float]]:
        args = (json.dumps(series_ids), json.dumps(ranges))
        # Mostly a few thousand points (the ends of a range, odd windows): on the loop, unless there are more.
        rows = self._read_now(lambda con: con.execute(q.RAW_ROWS + " LIMIT ?", (*args, AGG_NOW_ROWS + 1)).fetchall())
        if len(rows) <= AGG_NOW_ROWS:
            return rows
        return await self._read(lambda con: con.execute(q.RAW_ROWS, args).fetchall())

    async def rollup_rows(self, series_ids: list[int], width: int, ranges: list[tuple[int, int]]) -> list[RollupRow]:
        args = (json.dumps(series_ids), json.dumps(ranges), width)
        most = len(series_ids) * sum(-(-(hi - lo) // width) for lo, hi in ranges)  # one row per bucket at most
        if most <= AGG_NOW_ROWS:
            return self._read_now(lambda con: con.execute(q.ROLLUP_ROWS, args).fetchall())
        return await self._read(lambda con: con.execute(q.ROLLUP_ROWS, args).fetchall())

    async def purge(self, samples_before: int | None, rollups_before: int | None) -> int:
        ids = await self._read(lambda con: [r[0] for r in con.execute("SELECT id FROM series")])
        devices = await self._read(lambda con: [r[0] for r in con.execute("SELECT id FROM devices")])
        deleted = 0
        # One short transaction per series keeps the write lock free for ingest in between.
        for sid in ids:
            if samples_before is not None:
                deleted += await self._write(lambda con, s=sid: con.execute(
                    "DELETE FROM samples WHERE series_id = ? AND ts < ?", (s, samples_before)).rowcount)
            if rollups_before is not None:
                deleted += await self._write(lambda con, s=sid: con.execute(
                    "DELETE FROM rollups WHERE series_id = ? AND bucket < ?", (s, rollups_before)).rowcount)
        if samples_before is not None:
            for dev in devices:
                deleted += await self._write(lambda con, d=dev: con.execute(
                    "DELETE FROM frames WHERE device_id = ? AND ts < ?", (d, samples_before)).rowcount)
        if rollups_before is not None:
            deleted += await self._write(ml.purge_alerts, rollups_before)
            deleted += await self._write(purge_events_sqlite, rollups_before)
            deleted += await self._write(purge_documents_sqlite, rollups_before)
        return deleted

    async def events(self, query: EventQuery) -> list[EventRecord]:
        return await self._read(events_sqlite, query)

    async def put_documents(self, edge: str, documents: Sequence[DocumentIn], now_us: int) -> int:
        def run(con: sqlite3.Connection) -> int:
            con.execute("BEGIN IMMEDIATE")
            try:
                new = store_documents_sqlite(con, edge, documents, now_us)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            return new
        return await self._write(run)

    async def select(self, build: Callable[[Callable[[int], str]], tuple[str, list[Any]]]) -> list[tuple[Any, ...]]:
        sql, args = build(lambda _n: "?")
        return await self._read(lambda con: [tuple(r) for r in con.execute(sql, args)])

    # --- physics assemblies ----------------------------------------------------------
    async def put_assembly(self, record: AssemblyRecord) -> None:
        await self._write(lambda con: con.execute(q.INSERT_ASSEMBLY, (
            record.id, record.name, record.sha256, record.size, record.created, record.body, record.parts)))

    async def assembly(self, assembly_id: str) -> AssemblyRecord | None:
        row = await self._read(lambda con: con.execute(q.ASSEMBLY, (assembly_id,)).fetchone())
        return AssemblyRecord(*row) if row else None

    async def assemblies(self, limit: int, before: tuple[int, str] | None = None) -> list[AssemblySummary]:
        c, i = before if before is not None else (None, None)
        rows = await self._read(lambda con: con.execute(q.ASSEMBLIES, (c, c, i, limit)).fetchall())
        return [AssemblySummary(*r) for r in rows]

    async def assembly_ids(self) -> list[str]:
        return await self._read(lambda con: [r[0] for r in con.execute(q.ASSEMBLY_IDS)])

    # --- virtual-sensor bindings and derived points (cloud.storage.derived) -------------
    async def put_binding(self, name: str, device: str, spec: dict[str, Any], by: str, now_us: int, *,
                          replace: bool, max_per_device: int) -> process.BindingRow:
        return await self._write(process.put_binding, name, device, spec, by, now_us, replace, max_per_device)

    async def bindings(self, device: str | None = None, *, with_state: bool = True) -> list[process.BindingRow]:
        return self._read_now(process.bindings, device, with_state)

    async def set_binding_enabled(self, name: str, enabled: bool, now_us: int) -> process.BindingRow:
        return await self._write(process.set_enabled, name, enabled, now_us)

    async def advance_binding(self, write: process.DerivedWrite) -> bool:
        return await self._write(process.advance, write, self._derived_series)

    async def derived_points(self, name: str, start: int, stop: int, limit: int) -> list[process.DerivedTag]:
        return await self._read(process.derived, name, start, stop, limit)

    # --- model registry and alerts (cloud.storage.sqlite_registry) ---------------------
    async def put_model(self, model: NewModel, version: int | None = None) -> tuple[ModelVersion, bool]:
        return await self._write(ml.put_model, model, version)

    async def models(self, name: str | None = None) -> list[ModelVersion]:
        return await self._read(ml.models, name)

    async def model_version(self, name: str, version: int) -> ModelVersion | None:
        return await self._read(ml.model_version, name, version)

    async def model_package(self, name: str, version: int) -> tuple[str, bytes] | None:
        return await self._read(ml.model_package, name, version)

    async def delete_model(self, name: str, version: int) -> None:
        await self._write(ml.delete_model, name, version)

    async def assignments(self) -> list[Assignment]:
        return await self._read(ml.assignments)

    async def assign(self, scope: str, target: str | None, model: str, version: int, by: str,
                     now_us: int) -> Assignment:
        return await self._write(ml.assign, scope, target, model, version, by, now_us)

    async def unassign(self, scope: str, target: str | None, by: str, now_us: int) -> bool:
        return await self._write(ml.unassign, scope, target, by, now_us)

    async def assignment_changes(self, limit: int) -> list[AssignmentChange]:
        return await self._read(ml.assignment_changes, limit)

    async def alerts(self, query: AlertQuery) -> list[AlertRecord]:
        return await self._read(ml.alerts, query)

    async def alert(self, alert_id: int) -> AlertRecord | None:
        return await self._read(ml.alert, alert_id)

    async def ack_alert(self, alert_id: int, by: str, comment: str, now_us: int) -> AlertRecord:
        return await self._write(ml.ack_alert, alert_id, by, comment, now_us)

    async def model_reports(self) -> list[ModelReportRow]:
        return await self._read(ml.model_reports)

    async def ml_counts(self) -> MlCounts:
        return await self._read(ml.ml_counts)


def _migrate(con: sqlite3.Connection) -> list[int]:
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute(q.CREATE_MIGRATIONS)
        have = {r[0] for r in con.execute("SELECT version FROM schema_migrations")}
        applied = []
        for mig in MIGRATIONS:
            if mig.version in have:
                continue
            for statement in mig.sqlite.split(";"):
                if statement.strip():
                    con.execute(statement)
            if mig.upgrade_sqlite is not None:
                mig.upgrade_sqlite(con)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (mig.version, mig.name))
            applied.append(mig.version)
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return applied


def _claim_devices(con: sqlite3.Connection, claimant: str | None, names: set[str],
                   now_us: int) -> tuple[dict[str, int], dict[str, str | None]]:
    """The id and owner of each device named; new ones, and unbound ones, go to ``claimant``.

    Called inside the ingest transaction, which holds SQLite's write lock: of two edges sending
    one new device at once, the one whose batch commits first owns it.
    """
    if not names:
        return {}, {}
    listed = json.dumps(sorted(names))
    rows = con.execute(q.DEVICE_OWNERS, (listed,)).fetchall()
    if len(rows) < len(names) or (claimant is not None and any(r[2] is None for r in rows)):
        con.execute(q.INSERT_DEVICES, (now_us, claimant, listed))
        if claimant is not None:
            con.execute(q.CLAIM_DEVICES, (claimant, listed))
        rows = con.execute(q.DEVICE_OWNERS, (listed,)).fetchall()
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


def _bind(con: sqlite3.Connection, device: str, edge: str, by: str, reason: str, now_us: int,
          create: bool) -> DeviceMove | None:
    con.execute("BEGIN IMMEDIATE")
    try:
        if create:
            if con.execute(q.NEW_DEVICE, (device, now_us, edge)).rowcount == 0:
                raise DeviceExists(f"device {device!r} is known already; move it to another edge instead", "name")
            row: tuple[int, str | None] = (con.execute(q.DEVICE_OWNER, (device,)).fetchone()[0], None)
        else:
            row = con.execute(q.DEVICE_OWNER, (device,)).fetchone()
            if row is None:
                raise UnknownDevice(f"no device named {device!r}", "name")
            if row[1] == edge:
                con.execute("ROLLBACK")
                return None
            con.execute(q.SET_OWNER, (edge, row[0]))
        con.execute(q.INSERT_MOVE, (row[0], row[1], edge, by, now_us, reason))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return DeviceMove(device, row[1], edge, by, now_us, reason)


def _insert_frames(con: sqlite3.Connection, edge: str, readings: Readings,
                   ids: list[int]) -> tuple[list[TelemetryFrame], list[int]]:
    """Insert frame rows; return the frames that were new and their timestamps, in batch order.

    Usually every frame is new, which the count of rows changed tells. When some were stored
    before, the inserts are undone and made again with RETURNING, which answers with the keys
    stored and leaves out those ignored.
    """
    flat = list(chain.from_iterable(zip(ids, readings.stamps, repeat(edge, len(ids)), readings.seqs,
                                        [f.status for f in readings.frames], strict=True)))
    con.execute("SAVEPOINT frames")
    before = con.total_changes
    _insert_rows(con, q.insert_frames, flat, 5, q.FRAMES_PER_STATEMENT)
    if con.total_changes - before == len(ids):
        con.execute("RELEASE frames")
        return readings.frames, readings.stamps
    con.execute("ROLLBACK TO frames")
    con.execute("RELEASE frames")
    fresh: set[tuple[int, int]] = set()
    for start in range(0, len(flat), 5 * q.FRAMES_PER_STATEMENT):
        part = flat[start:start + 5 * q.FRAMES_PER_STATEMENT]
        fresh.update(con.execute(q.insert_frames(len(part) // 5, returning=True), part).fetchall())
    new = [k for k, key in enumerate(zip(ids, readings.stamps, strict=True)) if key in fresh]
    return [readings.frames[k] for k in new], [readings.stamps[k] for k in new]


def insert_samples(con: sqlite3.Connection, rows: SampleRows) -> None:
    """Sample rows, their rollups and each series' newest value: how telemetry and derived values are written."""
    _insert_rows(con, q.insert_numbers, rows.numbers, 3, q.SAMPLES_PER_STATEMENT)
    _insert_rows(con, q.insert_texts, rows.texts, 3, q.SAMPLES_PER_STATEMENT)
    _put_rollups(con, rows.rollups)
    con.executemany(q.UPDATE_SERIES_LAST, [(*v, sid, v[0]) for sid, v in rows.newest.items()])


def _insert_rows(con: sqlite3.Connection, sql: Callable[[int], str], flat: list[Any], width: int,
                 per_statement: int) -> None:
    """Rows of ``width`` parameters, flat; many rows per statement (far faster than one row per execute)."""
    step = width * per_statement
    whole = len(flat) - len(flat) % step
    if whole:
        many = sql(per_statement)
        for start in range(0, whole, step):
            con.execute(many, flat[start:start + step])
    if whole < len(flat):
        rest = flat[whole:]
        con.executemany(sql(1), zip(*(rest[k::width] for k in range(width)), strict=True))


def _record_edge(con: sqlite3.Connection, edge: str, health: EdgeHealth | None, now_us: int,
                 last_seq: int | None, stored: int, duplicates: int, rejected: int, skew: float | None) -> None:
    if health is None:
        values: tuple[Any, ...] = (None, None, "{}", None, "{}")
        sql = q.UPSERT_EDGE_COUNTS
    else:
        values = (health.queue_depth, health.oldest_age_s, json.dumps(health.drops), health.quarantined,
                  json.dumps(health.sources))
        sql = q.UPSERT_EDGE
    con.execute(sql, (edge, now_us, last_seq, *values, stored, duplicates, rejected, skew))


def _put_rollups(con: sqlite3.Connection, parts: dict[tuple[int, int, int], Partial]) -> None:
    """Merge a batch's rollup partials into the rows stored (inside the ingest transaction, which holds
    SQLite's write lock: no other writer can change them in between)."""
    stored: list[tuple[Any, ...]] = []
    for width, sids, lo, hi in rollup_spans(parts):
        stored += con.execute(q.STORED_ROLLUPS, (json.dumps(sids), width, lo, hi)).fetchall()
    rows = rows_to_store(parts, stored)
    _insert_rows(con, q.put_rollups, list(chain.from_iterable(rows)), 12, q.ROLLUPS_PER_STATEMENT)
