"""Versioned schema migrations, one module per version, each with SQLite and PostgreSQL text.

A database records the versions it has in ``schema_migrations``; opening a
store applies the missing ones in order, inside a transaction (PostgreSQL
under an advisory lock, so several processes starting together migrate once).
Never edit a released migration: add the next one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

__all__ = ["MIGRATIONS", "Migration", "latest_version"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgres: str
    # Data a statement cannot move: called after the SQL, inside the same transaction.
    backfill_sqlite: Callable[[Any], None] | None = None
    backfill_postgres: Callable[[Any], Awaitable[None]] | None = None


def _load() -> list[Migration]:
    out = []
    modules = ["v0001_init", "v0002_edge_counters", "v0003_device_owners", "v0004_rollup_levels"]
    for version, module in enumerate(modules, start=1):
        mod = import_module(f"cloud.migrations.{module}")
        out.append(Migration(version, module.split("_", 1)[1], mod.SQLITE, mod.POSTGRES,
                             getattr(mod, "backfill_sqlite", None), getattr(mod, "backfill_postgres", None)))
    return out


MIGRATIONS: list[Migration] = _load()


def latest_version() -> int:
    return MIGRATIONS[-1].version
