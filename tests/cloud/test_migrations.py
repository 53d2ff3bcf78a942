"""Versioned migrations: a database at an older version is brought up to date, data kept, on both backends."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from cloud.migrations import MIGRATIONS, latest_version
from cloud.storage.postgres import PostgresStorage
from cloud.storage.sqlite import SQLiteStorage
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
