"""PostgreSQL storage (asyncpg): for production and for several API processes or machines.

The schema is the one SQLite uses. ``frames`` and ``samples`` are partitioned
by week with PostgreSQL's own range partitioning (``cloud.storage.partitions``):
retention drops whole weeks instead of deleting rows. When the TimescaleDB
extension is installed, ``samples`` becomes a hypertable instead (one-day
chunks of integer microseconds) with native compression after seven days and
retention by dropping chunks. Batches travel as arrays, one statement per
table.

Ingest of one edge is serialized across processes: its transaction first
takes an advisory lock on the edge's name, so two replicas never interleave
one edge's batches. Each committed batch is announced on a notification
channel (``cloud.storage.notify``) for the other replicas' live feeds.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from cloud.config import redact_url
from cloud.documents import DocumentIn
from cloud.migrations import MIGRATIONS
from cloud.storage import postgres_derived as process
from cloud.storage import postgres_registry as ml
from cloud.storage import postgres_sql as q
from cloud.storage import sessions
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
from cloud.storage.derived import BindingRow, DerivedTag, DerivedWrite
from cloud.storage.documents import purge_documents_pg, store_documents_pg
from cloud.storage.events import EdgeEventIn, EventQuery, EventRecord, events_pg, purge_events_pg, store_events_pg
from cloud.storage.notify import CHANNEL, BatchFeed, notices, spans
from cloud.storage.partitions import WEEK_US, Partitions, convert, table_kind
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

__all__ = ["PostgresStorage"]

log = logging.getLogger(__name__)
_SESSION_CREATE = sessions.postgres(sessions.CREATE)
_SESSION_FIND = sessions.postgres(sessions.FIND)
_SESSION_TOUCH = sessions.postgres(sessions.TOUCH)
_SESSION_END = sessions.postgres(sessions.END)
_SESSION_PURGE = sessions.postgres(sessions.PURGE)
_RETRYABLE = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.QueryCanceledError,
)


class PostgresStorage(Storage):
    backend = "postgres"

    def __init__(self, dsn: str, *, pool_size: int = 8, timescale: bool = True, command_timeout: float = 30.0):
        super().__init__()
        self._dsn = dsn
        self._pool_size = pool_size
        self._want_timescale = timescale
        self._timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self.timescale = False
        self._parts = Partitions(())  # the tables partitioned by week, known after open()
        self._series: dict[tuple[str, str], int] = {}
        self.origin = secrets.token_hex(8)  # names this process in its notifications

    def feed(self) -> BatchFeed:
        """The batches other processes store, as they commit (``run`` it to listen)."""
        return BatchFeed(self._dsn, self.origin, self.where)

    @property
    def where(self) -> str:
        return redact_url(self._dsn)

    @asynccontextmanager
    async def _con(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StorageUnavailable("the PostgreSQL store is not open")
        try:
            async with self._pool.acquire() as con:
                yield con
        except _RETRYABLE as exc:
            raise StorageUnavailable(f"PostgreSQL at {self.where} is busy: {exc}") from None
        except (OSError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(f"PostgreSQL at {self.where} is unreachable: {exc}") from None
        except asyncpg.PostgresError as exc:
            raise StorageError(f"PostgreSQL at {self.where}: {exc}") from None

    async def open(self) -> None:
        if self._pool is None:
            await self._connect()
        async with self._con() as con:
            await con.execute("SELECT pg_advisory_lock($1)", q.MIGRATION_LOCK)
            try:
                await self._migrate(con)
                await self._setup_timescale(con)
                await self._setup_partitions(con)
            finally:
                await con.execute("SELECT pg_advisory_unlock($1)", q.MIGRATION_LOCK)

    async def _connect(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size,
                                                   command_timeout=self._timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(f"cannot connect to PostgreSQL at {self.where}: {exc}") from None

    async def _migrate(self, con: asyncpg.Connection) -> None:
        await con.execute(q.CREATE_MIGRATIONS)
        have = {r[0] for r in await con.fetch("SELECT version FROM schema_migrations")}
        for mig in MIGRATIONS:
            if mig.version in have:
                continue
            async with con.transaction():
                await con.execute(mig.postgres)
                if mig.upgrade_postgres is not None:
                    await mig.upgrade_postgres(con, timescale=await self._keeps_hypertable(con))
                await con.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                  mig.version, mig.name)
            log.info("PostgreSQL at %s migrated to schema version %d", self.where, mig.version)

    @staticmethod
    async def _is_hypertable(con: asyncpg.Connection) -> bool:
        return bool(await con.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
                    and await con.fetchval(q.IS_HYPERTABLE))

    async def _keeps_hypertable(self, con: asyncpg.Connection) -> bool:
        """Whether ``samples`` is a TimescaleDB hypertable, or is to become one."""
        if await self._is_hypertable(con):
            return True
        return bool(self._want_timescale and await con.fetchval(q.TIMESCALE_AVAILABLE))

    async def _setup_partitions(self, con: asyncpg.Connection) -> None:
        """Partition ``samples`` by week when TimescaleDB did not take it; create this week's partitions."""
        if not self.timescale and not await self._is_hypertable(con) and \
                await convert(con, "samples", time.time_ns() // 1000):
            log.info("PostgreSQL at %s: samples partitioned by week instead", self.where)
        self._parts = Partitions([t for t in ("frames", "samples") if await table_kind(con, t) == "p"])
        await self._make_partitions(con)

    async def _make_partitions(self, con: asyncpg.Connection) -> None:
        """This week's and the next two weeks' partitions, so that ingest seldom has to create one."""
        now = time.time_ns() // 1000
        await self._parts.ensure(con, [now, now + WEEK_US, now + 2 * WEEK_US])

    async def _setup_timescale(self, con: asyncpg.Connection) -> None:
        available = self._want_timescale and await con.fetchval(q.TIMESCALE_AVAILABLE)
        if await table_kind(con, "samples") == "p":
            if available:
                log.info("PostgreSQL at %s: samples are partitioned by week already; TimescaleDB is not used "
                         "for them", self.where)
            available = False
        if available:
            try:
                if not await con.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'") or \
                        not await con.fetchval(q.IS_HYPERTABLE):
                    async with con.transaction():
                        for statement in q.TIMESCALE_SETUP:
                            await con.execute(statement)
                    log.info("PostgreSQL at %s: samples stored in a TimescaleDB hypertable", self.where)
                self.timescale = True
                return
            except asyncpg.PostgresError as exc:
                log.warning("TimescaleDB is installed at %s but cannot be used (%s); samples are partitioned "
                            "by week instead", self.where, exc)
        await con.execute(q.BRIN_INDEX)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        async with self._con() as con:
            await con.fetchval("SELECT 1")

    async def schema_version(self) -> int:
        async with self._con() as con:
            return int(await con.fetchval("SELECT max(version) FROM schema_migrations") or 0)

    # --- ingest ----------------------------------------------------------------------
    async def _ingest(self, edge: str, readings: Readings, health: EdgeHealth | None,
                      now_us: int, last_seq: int | None, rejected: int, received: int,
                      clock_skew_s: float | None, check_owner: bool, alerts: Sequence[AlertEventIn],
                      reports: Sequence[ModelReportRow] | None, events: Sequence[EdgeEventIn] = (),
                     documents: Sequence[DocumentIn] = ()) -> Ingested:
        if self._parts.lacking(readings.stamps):  # a week no partition covers: create it first
            async with self._con() as con:
                await self._parts.ensure(con, readings.stamps)
        async with self._con() as con, con.transaction():
            await con.execute(q.LOCK_EDGE, edge)
            devices, owners = await _claim_devices(
                con, edge if check_owner else None, {f.device_id for f in readings.frames} | {a.device for a in alerts},
                now_us)
            owned, others = split_owned(readings, edge, owners) if check_owner else (readings, {})
            new_alerts = await ml.store_alerts(con, edge, [a for a in alerts if a.device not in others], now_us)
            if reports is not None:
                await ml.store_reports(con, edge, reports)
            await store_events_pg(con, edge, events, now_us)
            await store_documents_pg(con, edge, documents, now_us)
            refused = len(readings) - len(owned)  # frames of devices of other edges
            frames, stamps, seqs = owned.frames, owned.stamps, owned.seqs
            ids = [devices[f.device_id] for f in frames]
            rows = await con.fetch(q.INSERT_FRAMES, ids, stamps, edge, seqs, [f.status for f in frames])
            if len(rows) < len(frames):
                fresh = {(r[0], r[1]) for r in rows}
                new = [k for k, key in enumerate(zip(ids, stamps, strict=True)) if key in fresh]
                frames, stamps = [frames[k] for k in new], [stamps[k] for k in new]
            columns = frame_columns(frames, stamps)
            series = await self._series_ids(con, devices, {(c.device, c.field) for c in columns}, frames)
            samples = build_rows(columns, series)
            if samples:
                await con.execute(q.INSERT_SAMPLES, *samples.columns())
            if samples.rollups:
                await _put_rollups(con, samples.rollups)
            newest = samples.newest
            if newest:
                ids = sorted(newest)
                await con.execute(q.UPDATE_SERIES_LAST, ids, [newest[i][0] for i in ids],
                                  [newest[i][1] for i in ids], [newest[i][2] for i in ids])
            latest: dict[int, tuple[int, TelemetryFrame]] = {}
            for frame, ts in zip(frames, stamps, strict=True):
                did = devices[frame.device_id]
                if did not in latest or latest[did][0] < ts:
                    latest[did] = (ts, frame)
            if latest:
                ids = sorted(latest)
                await con.execute(q.UPDATE_DEVICES_LAST, ids, [latest[i][0] for i in ids],
                                  [latest[i][1].status for i in ids], edge)
            await _record_edge(con, edge, health, now_us, last_seq, len(frames), received - len(frames) - refused,
                               rejected + refused, clock_skew_s)
            for payload in notices(self.origin, spans(frames, stamps)):
                await con.execute(q.NOTIFY, CHANNEL, payload)
        self._series.update(series)
        return frames, len(samples), others, new_alerts

    async def _series_ids(self, con: asyncpg.Connection, devices: dict[str, int], wanted: set[tuple[str, str]],
                          frames: Sequence[TelemetryFrame]) -> dict[tuple[str, str], int]:
        """Series ids of the (device, field) pairs ``wanted``; new ones take the kind of their first value."""
        out = {k: self._series[k] for k in wanted if k in self._series}
        if len(out) < len(wanted):
            kinds: Mapping[tuple[str, str], str] = field_kinds(frames)
            missing = sorted(k for k in wanted if k not in out)
            dev = [devices[d] for d, _ in missing]
            names = [f for _, f in missing]
            await con.execute(q.INSERT_SERIES, dev, names, [kinds[k] for k in missing])
            by_id = {v: k for k, v in devices.items()}
            for did, name, sid in await con.fetch(q.SERIES_IDS, dev, names):
                out[(by_id[did], name)] = sid
        return out

    # --- identities ------------------------------------------------------------------
    # --- console sessions --------------------------------------------------------------
    async def create_session(self, session_hash: str, token_hash: str, csrf: str, now_us: int) -> None:
        async with self._con() as con:
            await con.execute(_SESSION_CREATE, session_hash, token_hash, csrf, now_us, now_us)

    async def session(self, session_hash: str, seen_after: int, created_after: int) -> SessionRecord | None:
        async with self._con() as con:
            row = await con.fetchrow(_SESSION_FIND, session_hash, seen_after, created_after)
        return sessions.record(None if row is None else tuple(row))

    async def touch_session(self, session_hash: str, now_us: int, unless_after: int) -> None:
        async with self._con() as con:
            await con.execute(_SESSION_TOUCH, now_us, session_hash, unless_after)

    async def end_session(self, session_hash: str) -> bool:
        async with self._con() as con:
            return str(await con.execute(_SESSION_END, session_hash)).endswith(" 1")

    async def purge_sessions(self, seen_before: int, created_before: int) -> int:
        async with self._con() as con:
            return int(str(await con.execute(_SESSION_PURGE, seen_before, created_before)).rsplit(" ", 1)[-1])

    async def create_identity(self, kind: str, name: str, role: str, token_hash: str, now_us: int) -> bool:
        async with self._con() as con:
            try:
                await con.execute(q.INSERT_IDENTITY, kind, name, role, token_hash, now_us)
            except asyncpg.UniqueViolationError:
                return False
            return True

    async def set_role(self, name: str, role: str) -> bool:
        async with self._con() as con:
            return str(await con.execute(q.SET_ROLE, role, name)).endswith(" 1")

    async def set_token(self, kind: str, name: str, token_hash: str) -> bool:
        async with self._con() as con:
            return str(await con.execute(q.SET_TOKEN, token_hash, kind, name)).endswith(" 1")

    async def revoke(self, kind: str, name: str, now_us: int) -> bool:
        async with self._con() as con:
            return str(await con.execute(q.REVOKE, now_us, kind, name)).endswith(" 1")

    async def principal(self, token_hash: str) -> Principal | None:
        async with self._con() as con:
            row = await con.fetchrow(q.PRINCIPAL, token_hash)
        return Principal(row[0], row[1], row[2]) if row else None

    async def identities(self, kind: str) -> list[dict[str, Any]]:
        async with self._con() as con:
            rows = await con.fetch(q.IDENTITIES, kind)
        return [{"name": r[0], "role": r[1], "created_at": r[2], "revoked_at": r[3]} for r in rows]

    async def identity_rows(self) -> list[tuple[str, str, str, str | None, int, int | None]]:
        async with self._con() as con:
            rows = await con.fetch("SELECT kind, name, role, token_hash, created_at, revoked_at FROM identities "
                                   "ORDER BY id")
        return [tuple(r) for r in rows]

    async def edges(self) -> list[EdgeRecord]:
        async with self._con() as con:
            rows = await con.fetch(q.EDGES)
        return [EdgeRecord(r[0], r[1], r[2] is not None, r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"),
                           r[8], json.loads(r[9] or "{}"), r[10] or 0, r[11] or 0, r[12] or 0, r[13]) for r in rows]

    # --- device owners ---------------------------------------------------------------
    async def device_records(self) -> list[DeviceRecord]:
        async with self._con() as con:
            return [DeviceRecord(*r) for r in await con.fetch(q.DEVICE_RECORDS)]

    async def bind_device(self, device: str, edge: str, by: str, reason: str, now_us: int, *,
                          create: bool) -> DeviceMove | None:
        async with self._con() as con, con.transaction():
            if create:
                device_id = await con.fetchval(q.NEW_DEVICE, device, now_us, edge)
                if device_id is None:
                    raise DeviceExists(f"device {device!r} is known already; move it to another edge instead",
                                       "name")
                before = None
            else:
                row = await con.fetchrow(q.DEVICE_OWNER + " FOR UPDATE", device)
                if row is None:
                    raise UnknownDevice(f"no device named {device!r}", "name")
                device_id, before = row
                if before == edge:
                    return None
                await con.execute(q.SET_OWNER, edge, device_id)
            await con.execute(q.INSERT_MOVE, device_id, before, edge, by, now_us, reason)
        return DeviceMove(device, before, edge, by, now_us, reason)

    async def device_moves(self, device: str, limit: int) -> list[DeviceMove]:
        async with self._con() as con:
            device_id = await con.fetchval("SELECT id FROM devices WHERE name = $1", device)
            if device_id is None:
                raise UnknownDevice(f"no device named {device!r}", "name")
            rows = await con.fetch(q.MOVES, device_id, limit)
        return [DeviceMove(device, *r) for r in reversed(rows)]

    # --- queries ---------------------------------------------------------------------
    async def devices(self) -> list[str]:
        async with self._con() as con:
            return [r[0] for r in await con.fetch(q.DEVICES)]

    async def device(self, name: str) -> tuple[int, int | None, str | None, str | None] | None:
        async with self._con() as con:
            row = await con.fetchrow(q.DEVICE, name)
        return tuple(row) if row else None

    async def lookup(self, name: str) -> tuple[tuple[int, int | None, str | None, str | None],
                                               list[SeriesInfo]] | None:
        async with self._con() as con:
            rows = await con.fetch(q.LOOKUP, name)
        if not rows:
            return None
        return tuple(rows[0][:4]), [SeriesInfo(*r[4:]) for r in rows if r[4] is not None]

    async def statuses(self, device_id: int, after: int, upto: int) -> dict[int, str]:
        async with self._con() as con:
            rows = await con.fetch(q.STATUSES, device_id, after, upto)
        return {r[0]: r[1] for r in rows}

    async def scan(self, series_id: int, start: int, stop: int, limit: int) -> list[tuple[int, float | str | None]]:
        async with self._con() as con:
            rows = await con.fetch(q.SCAN, series_id, start, stop, limit)
        return [(r[0], r[1] if r[2] is None else r[2]) for r in rows]

    async def scan_many(self, starts: Sequence[tuple[int, int]], stop: int,
                        limit: int) -> list[list[tuple[int, float | str | None]]]:
        if len(starts) < 2:
            return await super().scan_many(starts, stop, limit)
        async with self._con() as con:
            rows = await con.fetch(q.SCAN_MANY, [sid for sid, _ in starts], [lo for _, lo in starts], stop, limit,
                                   limit)
        out: list[list[tuple[int, float | str | None]]] = [[] for _ in starts]
        last_k, last_ts = 0, 0
        for k, ts, value, text in rows:
            if k < last_k or (k == last_k and ts <= last_ts):  # not in series order: the limit may have cut
                return await super().scan_many(starts, stop, limit)  # the wrong rows, so ask one by one
            last_k, last_ts = k, ts
            out[k - 1].append((ts, value if text is None else text))
        return out

    async def raw_rows(self, series_ids: list[int], ranges: list[tuple[int, int]]) -> list[tuple[int, int, float]]:
        async with self._con() as con:
            rows = await con.fetch(q.RAW_ROWS, series_ids, [lo for lo, _ in ranges], [hi for _, hi in ranges])
        return [(r[0], r[1], r[2]) for r in rows]

    async def rollup_rows(self, series_ids: list[int], width: int, ranges: list[tuple[int, int]]) -> list[RollupRow]:
        async with self._con() as con:
            rows = await con.fetch(q.ROLLUP_ROWS, series_ids, width, [lo for lo, _ in ranges],
                                   [hi for _, hi in ranges])
        return [tuple(r) for r in rows]

    async def aggregate_rows(self, series_ids: list[int], levels: Mapping[int, list[tuple[int, int]]],
                             raw: list[tuple[int, int]]) -> tuple[list[list[RollupRow]], list[tuple[int, int, float]]]:
        spans = [(width, lo, hi) for width, ranges in levels.items() for lo, hi in ranges]
        async with self._con() as con:
            rows = await con.fetch(q.AGGREGATE_ROWS, series_ids, [w for w, _, _ in spans], [lo for _, lo, _ in spans],
                                   [hi for _, _, hi in spans], [lo for lo, _ in raw], [hi for _, hi in raw])
        by_level: dict[int, list[RollupRow]] = {width: [] for width in levels}
        points: list[tuple[int, int, float]] = []
        for r in rows:
            if r[0]:
                by_level[r[0]].append(r[1:])
            else:
                points.append((r[1], r[2], r[6]))
        return list(by_level.values()), points

    async def purge(self, samples_before: int | None, rollups_before: int | None) -> int:
        deleted = 0
        async with self._con() as con:
            if samples_before is not None:
                for table in ("samples", "frames"):
                    deleted += await self._purge_table(con, table, samples_before)
            await self._make_partitions(con)
            if rollups_before is not None:
                deleted += _count(await con.execute("DELETE FROM rollups WHERE bucket < $1", rollups_before))
                deleted += await ml.purge_alerts(con, rollups_before)
                deleted += await purge_events_pg(con, rollups_before)
                deleted += await purge_documents_pg(con, rollups_before)
        return deleted

    async def events(self, query: EventQuery) -> list[EventRecord]:
        async with self._con() as con:
            return await events_pg(con, query)

    async def put_documents(self, edge: str, documents: Sequence[DocumentIn], now_us: int) -> int:
        async with self._con() as con, con.transaction():
            await con.execute(q.LOCK_EDGE, edge)
            return await store_documents_pg(con, edge, documents, now_us)

    async def select(self, build: Callable[[Callable[[int], str]], tuple[str, list[Any]]]) -> list[tuple[Any, ...]]:
        sql, args = build(lambda n: f"${n}")
        async with self._con() as con:
            return [tuple(r) for r in await con.fetch(sql, *args)]

    async def _purge_table(self, con: asyncpg.Connection, table: str, cutoff: int) -> int:
        """Rows older than the cutoff: whole weekly partitions or TimescaleDB chunks where there are, then
        the rows left (those of the partition or chunk that straddles the cutoff)."""
        if table in self._parts.tables:
            return await self._parts.purge(con, table, cutoff)
        deleted = 0
        if table == "samples" and self.timescale:
            deleted += len(await con.fetch("SELECT drop_chunks('samples', older_than => $1::bigint)", cutoff))
        return deleted + _count(await con.execute(f"DELETE FROM {table} WHERE ts < $1", cutoff))

    # --- physics assemblies ----------------------------------------------------------
    async def put_assembly(self, record: AssemblyRecord) -> None:
        async with self._con() as con:
            await con.execute(q.INSERT_ASSEMBLY, record.id, record.name, record.sha256, record.size,
                              record.created, record.body, record.parts)

    async def assembly(self, assembly_id: str) -> AssemblyRecord | None:
        async with self._con() as con:
            row = await con.fetchrow(q.ASSEMBLY, assembly_id)
        return AssemblyRecord(*row) if row else None

    async def assemblies(self, limit: int, before: tuple[int, str] | None = None) -> list[AssemblySummary]:
        c, i = before if before is not None else (None, None)
        async with self._con() as con:
            rows = await con.fetch(q.ASSEMBLIES, c, i, limit)
        return [AssemblySummary(*r) for r in rows]

    async def assembly_ids(self) -> list[str]:
        async with self._con() as con:
            return [r[0] for r in await con.fetch(q.ASSEMBLY_IDS)]

    # --- virtual-sensor bindings and derived points (cloud.storage.postgres_derived) ----
    async def put_binding(self, name: str, device: str, spec: dict[str, Any], by: str, now_us: int, *,
                          replace: bool, max_per_device: int) -> BindingRow:
        async with self._con() as con:
            return await process.put_binding(con, name, device, spec, by, now_us, replace, max_per_device)

    async def bindings(self, device: str | None = None, *, with_state: bool = True) -> list[BindingRow]:
        async with self._con() as con:
            return await process.bindings(con, device, with_state)

    async def set_binding_enabled(self, name: str, enabled: bool, now_us: int) -> BindingRow:
        async with self._con() as con:
            return await process.set_enabled(con, name, enabled, now_us)

    async def advance_binding(self, write: DerivedWrite) -> bool:
        stamps = [p[1] for p in write.points if p[2] is not None]
        if self._parts.lacking(stamps):  # a week no partition covers: create it first (outside the transaction)
            async with self._con() as con:
                await self._parts.ensure(con, stamps)
        async with self._con() as con:
            return await process.advance(con, write, self._series, _put_rollups,
                                         lambda frames, at: notices(self.origin, spans(frames, at)))

    async def derived_points(self, name: str, start: int, stop: int, limit: int) -> list[DerivedTag]:
        async with self._con() as con:
            return await process.derived(con, name, start, stop, limit)

    # --- model registry and alerts (cloud.storage.postgres_registry) -------------------
    async def put_model(self, model: NewModel, version: int | None = None) -> tuple[ModelVersion, bool]:
        async with self._con() as con:
            return await ml.put_model(con, model, version)

    async def models(self, name: str | None = None) -> list[ModelVersion]:
        async with self._con() as con:
            return await ml.models(con, name)

    async def model_version(self, name: str, version: int) -> ModelVersion | None:
        async with self._con() as con:
            return await ml.model_version(con, name, version)

    async def model_package(self, name: str, version: int) -> tuple[str, bytes] | None:
        async with self._con() as con:
            return await ml.model_package(con, name, version)

    async def delete_model(self, name: str, version: int) -> None:
        async with self._con() as con:
            await ml.delete_model(con, name, version)

    async def assignments(self) -> list[Assignment]:
        async with self._con() as con:
            return await ml.assignments(con)

    async def assign(self, scope: str, target: str | None, model: str, version: int, by: str,
                     now_us: int) -> Assignment:
        async with self._con() as con:
            return await ml.assign(con, scope, target, model, version, by, now_us)

    async def unassign(self, scope: str, target: str | None, by: str, now_us: int) -> bool:
        async with self._con() as con:
            return await ml.unassign(con, scope, target, by, now_us)

    async def assignment_changes(self, limit: int) -> list[AssignmentChange]:
        async with self._con() as con:
            return await ml.assignment_changes(con, limit)

    async def alerts(self, query: AlertQuery) -> list[AlertRecord]:
        async with self._con() as con:
            return await ml.alerts(con, query)

    async def alert(self, alert_id: int) -> AlertRecord | None:
        async with self._con() as con:
            return await ml.alert(con, alert_id)

    async def ack_alert(self, alert_id: int, by: str, comment: str, now_us: int) -> AlertRecord:
        async with self._con() as con:
            return await ml.ack_alert(con, alert_id, by, comment, now_us)

    async def model_reports(self) -> list[ModelReportRow]:
        async with self._con() as con:
            return await ml.model_reports(con)

    async def ml_counts(self) -> MlCounts:
        async with self._con() as con:
            return await ml.ml_counts(con)


async def _claim_devices(con: asyncpg.Connection, claimant: str | None, names: set[str],
                         now_us: int) -> tuple[dict[str, int], dict[str, str | None]]:
    """The id and owner of each device named; new ones, and unbound ones, go to ``claimant``.

    Inside the ingest transaction: of two edges inserting one new device at once, the second
    waits for the first to commit and then reads the first one's binding (read committed).
    """
    if not names:
        return {}, {}
    listed = sorted(names)
    rows = await con.fetch(q.DEVICE_OWNERS, listed)
    if len(rows) < len(names) or (claimant is not None and any(r[2] is None for r in rows)):
        await con.execute(q.INSERT_DEVICES, listed, now_us, claimant)
        if claimant is not None:
            await con.execute(q.CLAIM_DEVICES, listed, claimant)
        rows = await con.fetch(q.DEVICE_OWNERS, listed)
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


async def _put_rollups(con: asyncpg.Connection, parts: dict[tuple[int, int, int], Partial]) -> None:
    """Merge a batch's rollup partials into the rows stored, under the lock of each series touched."""
    await con.execute(q.LOCK_SERIES, q.ROLLUP_LOCK, sorted({sid for sid, _, _ in parts}))
    stored: list[tuple[Any, ...]] = []
    for width, sids, lo, hi in rollup_spans(parts):
        stored += [tuple(r) for r in await con.fetch(q.STORED_ROLLUPS, sids, width, lo, hi)]
    rows = rows_to_store(parts, stored)
    await con.execute(q.PUT_ROLLUPS, *map(list, zip(*rows, strict=True)))


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1]) if status.rsplit(" ", 1)[-1].isdigit() else 0


async def _record_edge(con: asyncpg.Connection, edge: str, health: EdgeHealth | None, now_us: int,
                       last_seq: int | None, stored: int, duplicates: int, rejected: int, skew: float | None) -> None:
    if health is None:
        await con.execute(q.UPSERT_EDGE_COUNTS, edge, now_us, last_seq, None, None, "{}", None, "{}",
                          stored, duplicates, rejected, skew)
        return
    await con.execute(q.UPSERT_EDGE, edge, now_us, last_seq, health.queue_depth, health.oldest_age_s,
                      json.dumps(health.drops), health.quarantined, json.dumps(health.sources),
                      stored, duplicates, rejected, skew)
