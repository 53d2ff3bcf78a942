"""Versioned migrations: a database at an older version is brought up to date, data kept, on both backends."""

from __future__ import annotations

import math
import sqlite3

import asyncpg
import pytest

from cloud.migrations import MIGRATIONS, latest_version
from cloud.storage.postgres import PostgresStorage
from cloud.storage.sqlite import SQLiteStorage
from tests.cloud.oldschema import postgres_at_version, sqlite_at_version
from tests.cloud.pg import PgServer, fresh_pg_database

V1 = MIGRATIONS[0]


def test_versions_are_numbered_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, latest_version() + 1))
    assert all(m.sqlite.strip() and m.postgres.strip() for m in MIGRATIONS)


async def test_a_version_1_sqlite_database_is_upgraded_in_place(tmp_path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    for statement in V1.sqlite.split(";"):
        if statement.strip():
            con.execute(statement)
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'init')")
    con.execute("INSERT INTO edge_status (name, last_seen, frames_stored) VALUES ('line-1', 5, 42)")
    con.close()
    store = SQLiteStorage(path)
    await store.open()
    try:
        assert await store.schema_version() == latest_version()
        await store.create_identity("edge", "line-1", "edge", "h", 1)
        [edge] = await store.edges()
        assert (edge.frames_stored, edge.duplicates, edge.rejected) == (42, 0, 0)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_version_1_postgresql_database_is_upgraded_in_place(pg_server: PgServer) -> None:
    url = await fresh_pg_database(pg_server)
    con = await asyncpg.connect(url)
    try:
        await con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                          "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        await con.execute(V1.postgres)
        await con.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'init')")
        await con.execute("INSERT INTO edge_status (name, last_seen, frames_stored) VALUES ('line-1', 5, 42)")
    finally:
        await con.close()
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    try:
        assert await store.schema_version() == latest_version()
        await store.create_identity("edge", "line-1", "edge", "h", 1)
        [edge] = await store.edges()
        assert (edge.frames_stored, edge.duplicates, edge.rejected) == (42, 0, 0)
    finally:
        await store.close()


# --- version 4: rollup levels built from the samples of an older database -------------------------
HOUR = 3_600_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
POINTS = [(T0 + 30_000_000 + k * 1_000_000, round(20 + (k % 97) * 0.37 - (k % 13) * 1.1, 3)) for k in range(7_300)]
OLD_MINUTE = (T0 - 10 * 60_000_000, 3, 6.0, 1.0, 3.0, T0 - 599_000_000, 1.0, T0 - 590_000_000, 3.0)
BOGUS_MINUTE = (T0, 999, 1e9, -1e9, 1e9, T0, 5.0, T0 + 59_000_000, 5.0)  # samples of this minute exist: ignored


def _expected(window: int, lo: int, hi: int) -> dict[int, tuple[int, float, float, float]]:
    out: dict[int, list[float]] = {}
    for ts, v in POINTS:
        if lo <= ts < hi:
            out.setdefault(ts - ts % window, []).append(v)
    result = {b: (len(vs), math.fsum(vs), min(vs), max(vs)) for b, vs in out.items()}
    if lo <= OLD_MINUTE[0] < hi:
        b = OLD_MINUTE[0] - OLD_MINUTE[0] % window
        assert b not in result
        result[b] = (3, 6.0, 1.0, 3.0)
    return result


async def _check_version_4(store: SQLiteStorage | PostgresStorage) -> None:
    assert await store.schema_version() == latest_version()
    for window, lo, hi in [(HOUR, T0 - HOUR, T0 + 3 * HOUR), (10_000_000, T0, T0 + 600_000_000),
                           (60_000_000, T0 - 700_000_000, T0 + 3 * HOUR + 17)]:
        [(_, buckets)] = await store.aggregate("m1", ["t"], lo, hi, window)
        assert {b: (a.count, a.sum, a.min, a.max) for b, a in buckets} == _expected(window, lo, hi)


async def test_a_version_3_sqlite_database_gets_rollup_levels_from_its_samples(tmp_path) -> None:
    path = tmp_path / "v3.db"
    con = sqlite3.connect(path, isolation_level=None)
    sqlite_at_version(con, 3)
    con.execute("INSERT INTO devices (name, first_seen, last_ts) VALUES ('m1', 0, ?)", (POINTS[-1][0],))
    con.execute("INSERT INTO series (device_id, field, kind) VALUES (1, 't', 'num')")
    con.executemany("INSERT INTO samples (series_id, ts, value) VALUES (1, ?, ?)", POINTS)
    con.executemany("INSERT INTO rollups_1m VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [OLD_MINUTE, BOGUS_MINUTE])
    con.close()
    store = SQLiteStorage(path)
    await store.open()
    try:
        await _check_version_4(store)
    finally:
        await store.close()
    con = sqlite3.connect(path)
    assert not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollups_1m'").fetchall()
    con.close()


@pytest.mark.postgres
async def test_a_version_3_postgresql_database_gets_rollup_levels_from_its_samples(pg_server: PgServer) -> None:
    url = await fresh_pg_database(pg_server)
    con = await asyncpg.connect(url)
    try:
        await postgres_at_version(con, 3)
        await con.execute("INSERT INTO devices (name, first_seen, last_ts) VALUES ('m1', 0, $1)", POINTS[-1][0])
        await con.execute("INSERT INTO series (device_id, field, kind) VALUES (1, 't', 'num')")
        await con.copy_records_to_table("samples", records=[(1, ts, v, None) for ts, v in POINTS])
        await con.executemany("INSERT INTO rollups_1m VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9)",
                              [OLD_MINUTE, BOGUS_MINUTE])
    finally:
        await con.close()
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    try:
        await _check_version_4(store)
    finally:
        await store.close()
