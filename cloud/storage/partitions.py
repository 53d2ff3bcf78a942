"""PostgreSQL's own range partitioning by time for ``samples`` and ``frames``: one partition per week.

A partitioned table has one partition per week (Monday 00:00 UTC to the next
Monday), named after its first day (``samples_p20260105``), and a DEFAULT
partition (``samples_default``) that takes any row no weekly partition covers.
A week's partition is created before a row of it is stored: the current and
the next two weeks when the store opens and at each retention pass, any other
week by ingest when a batch brings a timestamp no partition covers. The
partition is built as a table of its own and then attached. Meanwhile the
table takes no row (its lock in SHARE ROW EXCLUSIVE mode waits for the
transactions writing to it and holds back new ones, for the few milliseconds
a creation takes; reads go on): the rows of that week in the DEFAULT partition
move into the new partition, none can be stored there while they move, and an
insert that waited routes its rows by the new set of partitions. Without that
lock, any process whose insert PostgreSQL routed to the DEFAULT partition just
before the attach would fail (``new row for relation "frames_default" violates
partition constraint``), or the attach would (``updated partition constraint
for default partition ... would be violated``): processes do not agree on
which weeks get a partition (each has its own last retention cutoff and busy
pause, and an edge's clock may run ahead), so one may store
rows of a week in the DEFAULT partition while another creates its partition.
Replicas creating the same week at once take turns through an advisory lock.
A creation that would wait longer than ``LOCK_TIMEOUT`` for a lock (a long
report holding the table, a long write) gives way: the rows go to the DEFAULT
partition and move later, and ingest tries again after ``BUSY_PAUSE``. At
most ``MAX_NEW_PER_BATCH`` partitions are created per batch, and none for a
week wholly older than the last retention cutoff (its rows are removed at the
next pass anyway), so a batch of odd timestamps cannot fill the catalog.

Retention drops every partition wholly older than the cutoff, deletes the
rows older than the cutoff in the one partition that straddles it and in the
DEFAULT partition: exactly the rows ``DELETE ... WHERE ts < cutoff`` removes.
Dropping locks the table for a moment; when that would wait longer than
``LOCK_TIMEOUT``, the partition's rows are deleted instead and the empty
partition goes at a later pass.
A table that existed before partitioning keeps its rows: it becomes the
partition ``<table>_legacy`` of everything before the week the conversion ran
in (no row is copied; one sequential read checks the bound), and retention
drops it once the cutoff passes that week.
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

__all__ = [
    "LOCK_TIMEOUT",
    "MAX_NEW_PER_BATCH",
    "WEEK_US",
    "Bound",
    "Partitions",
    "convert",
    "gaps",
    "partition_name",
    "week_start",
]

log = logging.getLogger(__name__)
DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US
MONDAY_US = 4 * DAY_US  # 1970-01-05, the first Monday after the epoch: weeks start on Mondays, 00:00 UTC
MIN_TS = -(2**63)
MAX_TS = 2**63 - 1
PARTITION_LOCK = 7_306_915_201  # advisory lock key: one process changes the partitions of the tables at a time
LOCK_TIMEOUT = "2s"  # the longest a partition change waits for a table lock before it gives way
BUSY_PAUSE = 60.0  # seconds ingest stops trying to create partitions after it had to give way
MAX_NEW_PER_BATCH = 8
CONVERT_TIMEOUT = 7 * 86400.0  # the conversion reads the whole table once: no command timeout for it
KEYS = {"samples": "series_id, ts", "frames": "device_id, ts"}  # the primary keys: unique per partition
_BOUND = re.compile(r"FOR VALUES FROM \((?:'(-?\d+)'|MINVALUE)\) TO \((?:'(-?\d+)'|MAXVALUE)\)")
_PARTITIONS = """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass($1)"""
_KIND = "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)"


@dataclass(frozen=True, slots=True, order=True)
class Bound:
    """One partition: rows with lo <= ts < hi."""

    lo: int
    hi: int
    name: str


def week_start(ts: int) -> int:
    return MONDAY_US + (ts - MONDAY_US) // WEEK_US * WEEK_US


def weeks_of(stamps: Sequence[int]) -> set[int]:
    """The weeks (their first microsecond) of some timestamps."""
    if not stamps:
        return set()
    lo, hi = week_start(min(stamps)), week_start(max(stamps))
    if lo == hi:
        return {lo}
    return {MONDAY_US + (t - MONDAY_US) // WEEK_US * WEEK_US for t in stamps}


def partition_name(table: str, lo: int) -> str:
    """``samples_p20260105``: the table and the first day of the partition."""
    day = datetime.fromtimestamp(lo / 1_000_000, UTC)
    if lo % DAY_US == 0 and 1 <= day.year <= 9999:
        return f"{table}_p{day:%Y%m%d}"
    return f"{table}_p{lo}".replace("-", "m")


def gaps(lo: int, hi: int, bounds: Sequence[Bound]) -> list[tuple[int, int]]:
    """The parts of [lo, hi) that no partition of ``bounds`` (sorted, disjoint) covers."""
    out: list[tuple[int, int]] = []
    at = lo
    k = max(bisect.bisect_right(bounds, lo, key=lambda b: b.lo) - 1, 0)
    for b in bounds[k:]:
        if b.lo >= hi:
            break
        if b.hi <= at:
            continue
        if b.lo > at:
            out.append((at, b.lo))
        at = max(at, b.hi)
        if at >= hi:
            return out
    if at < hi:
        out.append((at, hi))
    return out


async def table_kind(con: asyncpg.Connection, table: str) -> str | None:
    """'p' for a partitioned table, 'r' for a plain one, None when there is none."""
    kind = await con.fetchval(_KIND, table)
    return str(kind) if kind is not None else None


async def bounds(con: asyncpg.Connection, table: str) -> list[Bound]:
    """The range partitions of a table, by time (the DEFAULT partition left out)."""
    out = []
    for name, expr in await con.fetch(_PARTITIONS, table):
        m = _BOUND.fullmatch(expr or "")
        if m:
            out.append(Bound(int(m[1]) if m[1] else MIN_TS, int(m[2]) if m[2] else MAX_TS, name))
    return sorted(out)


async def _lock(con: asyncpg.Connection) -> None:
    """Inside a transaction: wait for other processes' partition changes, then bound every lock wait."""
    await con.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
    await con.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")


async def _create(con: asyncpg.Connection, table: str, lo: int, hi: int) -> str:
    """Attach a new partition [lo, hi) and move into it the rows of that range the DEFAULT partition holds.

    The caller holds ``table`` in SHARE ROW EXCLUSIVE mode: no row can reach the DEFAULT partition meanwhile.
    """
    name = partition_name(table, lo)
    await con.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                      "INCLUDING INDEXES)")
    await con.execute(f"""WITH moved AS (DELETE FROM {table}_default WHERE ts >= $1 AND ts < $2 RETURNING *)
        INSERT INTO {name} SELECT * FROM moved""", lo, hi)
    await con.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
    return name


async def convert(con: asyncpg.Connection, table: str, now_us: int) -> bool:
    """Make a plain ``table`` partitioned by week, keeping its rows; False when there was nothing to do.

    Runs inside the caller's transaction (the schema migration). The old table,
    its indexes renamed, becomes the partition of everything before the current
    week: rows of this week and later move to weekly partitions, and attaching
    reads the old table once to check the bound. No row of the past is copied.
    """
    if await table_kind(con, table) != "r":
        return False
    timeout = CONVERT_TIMEOUT
    await con.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE", timeout=timeout)
    legacy = f"{table}_legacy"
    await con.execute(f"ALTER TABLE {table} RENAME TO {legacy}")
    for (index,) in await con.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1 "
                                    "AND schemaname = current_schema()", legacy):
        await con.execute(f"ALTER INDEX {index} RENAME TO {legacy}_{index.removeprefix(table + '_')}")
    # The columns as the old table has them, whatever migrations added.
    await con.execute(f"CREATE TABLE {table} (LIKE {legacy} INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
                      f"PRIMARY KEY ({KEYS[table]})) PARTITION BY RANGE (ts)")
    await con.execute(f"CREATE INDEX {table}_ts_brin ON {table} USING brin (ts)")
    await con.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    edge = week_start(now_us)
    newer = [r[0] for r in await con.fetch(
        f"SELECT DISTINCT {MONDAY_US} + (ts - {MONDAY_US}) / {WEEK_US} * {WEEK_US} FROM {legacy} WHERE ts >= $1",
        edge, timeout=timeout)]  # ts >= 1970 here, so integer division floors
    for lo in sorted(set(newer) | {edge, edge + WEEK_US}):
        await con.execute(f"CREATE TABLE {partition_name(table, lo)} PARTITION OF {table} "
                          f"FOR VALUES FROM ({lo}) TO ({lo + WEEK_US})")
    await con.execute(f"""WITH moved AS (DELETE FROM {legacy} WHERE ts >= $1 RETURNING *)
        INSERT INTO {table} SELECT * FROM moved""", edge, timeout=timeout)
    if not await con.fetchval(f"SELECT EXISTS (SELECT 1 FROM {legacy})"):
        await con.execute(f"DROP TABLE {legacy}")  # a new database: nothing to keep
        return True
    await con.execute(f"ALTER TABLE {table} ATTACH PARTITION {legacy} FOR VALUES FROM (MINVALUE) TO ({edge})",
                      timeout=timeout)
    log.info("PostgreSQL table %s is now partitioned by week (rows before %s kept in %s)", table,
             datetime.fromtimestamp(edge / 1_000_000, UTC).date(), legacy)
    return True


class Partitions:
    """The weekly partitions of some tables of one database, as one process knows them.

    ``tables`` in the order ingest writes them (``frames`` before ``samples``): creation locks them in it.
    """

    def __init__(self, tables: Iterable[str]) -> None:
        self.tables = tuple(tables)
        self.floor = MIN_TS  # weeks that end before this (the last retention cutoff) get no partition
        self._covered: set[int] = set()  # weeks every table has a partition for
        self._busy_until = 0.0  # monotonic time: creating gave way to a busy table, wait before trying again

    def lacking(self, stamps: Sequence[int]) -> list[int]:
        """The weeks of ``stamps`` that may still need a partition (this process has not seen them covered)."""
        if time.monotonic() < self._busy_until:
            return []
        return sorted(w for w in weeks_of(stamps) - self._covered if w + WEEK_US > self.floor)

    async def ensure(self, con: asyncpg.Connection, stamps: Sequence[int], limit: int = MAX_NEW_PER_BATCH) -> int:
        """Create the partitions the weeks of ``stamps`` lack (at most ``limit``); returns how many.

        Rows of weeks left without one go to the DEFAULT partition. Call it outside any transaction.
        """
        wanted = self.lacking(stamps)
        if not wanted or not self.tables:
            return 0
        done: list[int] = []
        try:
            async with con.transaction():
                await _lock(con)
                have = {table: await bounds(con, table) for table in self.tables}
                plan: list[tuple[str, int, int]] = []
                for week in wanted:
                    todo = [(t, *g) for t in self.tables for g in gaps(week, week + WEEK_US, have[t])]
                    if len(plan) + len(todo) > limit:
                        break
                    plan += todo
                    done.append(week)
                # In the order ingest writes the tables, so that the two never wait for each other in a circle.
                for table in [t for t in self.tables if any(p[0] == t for p in plan)]:
                    await con.execute(f"LOCK TABLE ONLY {table} IN SHARE ROW EXCLUSIVE MODE")
                for table, lo, hi in plan:
                    await _create(con, table, lo, hi)
                created = len(plan)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            self._busy_until = time.monotonic() + BUSY_PAUSE
            log.info("new weekly partitions wait for a busy table; rows go to the DEFAULT partition for "
                     "now, the next try in %.0f s", BUSY_PAUSE)
            return 0
        self._covered.update(done)
        if created:
            log.info("created %d weekly partition(s) of %s", created, ", ".join(self.tables))
        return created

    async def purge(self, con: asyncpg.Connection, table: str, cutoff: int) -> int:
        """Remove the rows of ``table`` older than ``cutoff``: whole partitions where it can. Rows removed."""
        self.floor = max(self.floor, cutoff)
        self._covered = {w for w in self._covered if w + WEEK_US > cutoff}
        removed = 0
        for b in await bounds(con, table):
            if b.hi <= cutoff:
                removed += await self._drop(con, table, b.name, cutoff)
            elif b.lo < cutoff:
                removed += _count(await con.execute(f"DELETE FROM {b.name} WHERE ts < $1", cutoff))
        removed += _count(await con.execute(f"DELETE FROM {table}_default WHERE ts < $1", cutoff))
        return removed

    @staticmethod
    async def _drop(con: asyncpg.Connection, table: str, name: str, cutoff: int) -> int:
        try:
            async with con.transaction():
                await _lock(con)
                if await con.fetchval("SELECT to_regclass($1)", name) is None:
                    return 0  # another process dropped it
                rows = int(await con.fetchval(f"SELECT count(*) FROM {name}"))
                await con.execute(f"DROP TABLE {name}")
            log.info("retention: dropped partition %s of %s (%d rows)", name, table, rows)
            return rows
        except asyncpg.LockNotAvailableError:
            # The table is busy: delete the rows now, drop the empty partition at a later pass.
            return _count(await con.execute(f"DELETE FROM {name} WHERE ts < $1", cutoff))


def _count(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
