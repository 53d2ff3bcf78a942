"""Schema version 4: rollups at three levels (10 s, 1 min, 1 h) with exact sums, in place of per-minute ones.

``rollups`` holds, per series, level width and bucket, the count, the exact
sum as ``sum_m * 2**sum_e`` (``sum_m`` as text: it may exceed 64 bits), the
minimum, maximum, and first and last value by timestamp. The rows are built
from the stored samples; minutes older than a series' first sample (whose
samples retention removed) come from the per-minute rollups, which are then
dropped.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from cloud.storage.rollups import Backfill

if TYPE_CHECKING:
    import asyncpg

SQLITE = """
CREATE TABLE rollups (
    series_id INTEGER NOT NULL,
    width INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    cnt INTEGER NOT NULL,
    sum_m TEXT NOT NULL,
    sum_e INTEGER NOT NULL,
    vmin REAL NOT NULL,
    vmax REAL NOT NULL,
    first_ts INTEGER NOT NULL,
    first_value REAL NOT NULL,
    last_ts INTEGER NOT NULL,
    last_value REAL NOT NULL,
    PRIMARY KEY (series_id, width, bucket)
) WITHOUT ROWID;
"""

POSTGRES = """
CREATE TABLE rollups (
    series_id INTEGER NOT NULL,
    width BIGINT NOT NULL,
    bucket BIGINT NOT NULL,
    cnt BIGINT NOT NULL,
    sum_m TEXT NOT NULL,
    sum_e INTEGER NOT NULL,
    vmin DOUBLE PRECISION NOT NULL,
    vmax DOUBLE PRECISION NOT NULL,
    first_ts BIGINT NOT NULL,
    first_value DOUBLE PRECISION NOT NULL,
    last_ts BIGINT NOT NULL,
    last_value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, width, bucket)
);
"""

_OLD_MINUTES = """SELECT bucket, cnt, total, vmin, vmax, first_ts, first_value, last_ts, last_value FROM rollups_1m
    WHERE series_id = {} AND bucket < {} ORDER BY bucket"""
_FIRST = "SELECT min(ts) FROM samples WHERE series_id = {}"
_POINTS = "SELECT ts, value FROM samples WHERE series_id = {} AND value IS NOT NULL ORDER BY ts"
_INSERT_SQLITE = "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_POSTGRES = """INSERT INTO rollups SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bigint[],
    $5::text[], $6::int[], $7::float8[], $8::float8[], $9::bigint[], $10::float8[], $11::bigint[], $12::float8[])"""
_CHUNK = 50_000
_NEVER = 2**62


def upgrade_sqlite(con: sqlite3.Connection) -> None:
    """Inside the migration's transaction."""
    for (sid,) in con.execute("SELECT id FROM series ORDER BY id").fetchall():
        build = Backfill(sid)
        build.minutes(con.execute(_OLD_MINUTES.format("?", "?"),
                                  (sid, _cutoff(con.execute(_FIRST.format("?"), (sid,)).fetchone()[0]))).fetchall())
        cur = con.execute(_POINTS.format("?"), (sid,))
        while chunk := cur.fetchmany(_CHUNK):
            con.executemany(_INSERT_SQLITE, build.points(chunk))
        con.executemany(_INSERT_SQLITE, build.finish())
    con.execute("DROP TABLE rollups_1m")


def _cutoff(first_sample: int | None) -> int:
    """Minutes before this one have no samples left; the minute of the first sample is built from samples."""
    return _NEVER if first_sample is None else first_sample - first_sample % 60_000_000


async def upgrade_postgres(con: asyncpg.Connection, *, timescale: bool = False) -> None:
    """Inside the migration's transaction (``timescale``: whether samples are a hypertable; read alike)."""
    for sid in [r[0] for r in await con.fetch("SELECT id FROM series ORDER BY id")]:
        build = Backfill(sid)
        cutoff = _cutoff(await con.fetchval(_FIRST.format("$1"), sid))
        build.minutes([tuple(r) for r in await con.fetch(_OLD_MINUTES.format("$1", "$2"), sid, cutoff)])
        cur = await con.cursor(_POINTS.format("$1"), sid)
        while chunk := await cur.fetch(_CHUNK):
            await _insert_postgres(con, build.points([(r[0], r[1]) for r in chunk]))
        await _insert_postgres(con, build.finish())
    await con.execute("DROP TABLE rollups_1m")


async def _insert_postgres(con: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        await con.execute(_INSERT_POSTGRES, *map(list, zip(*rows, strict=True)))
