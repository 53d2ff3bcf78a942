"""Databases of an earlier schema version, as an older twincloud left them, for the upgrade tests."""

from __future__ import annotations

import sqlite3

import asyncpg

from cloud.migrations import MIGRATIONS

__all__ = ["postgres_at_version", "sqlite_at_version"]


def sqlite_at_version(con: sqlite3.Connection, version: int) -> None:
    """Apply migrations 1..``version`` to an empty SQLite database and record them."""
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    for mig in MIGRATIONS[:version]:
        for statement in mig.sqlite.split(";"):
            if statement.strip():
                con.execute(statement)
        con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (mig.version, mig.name))


async def postgres_at_version(con: asyncpg.Connection, version: int) -> None:
    """Apply migrations 1..``version`` to an empty PostgreSQL database and record them."""
    await con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                      "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    for mig in MIGRATIONS[:version]:
        await con.execute(mig.postgres)
        await con.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", mig.version, mig.name)
