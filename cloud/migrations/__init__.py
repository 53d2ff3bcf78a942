"""Versioned schema migrations, one module per version, each with SQLite and PostgreSQL text.

A module may add ``upgrade_postgres`` and ``upgrade_sqlite``, a step in Python
for what SQL text alone cannot decide or compute (which tables to partition,
say, or rollups with exact sums); it runs after the text, in the same
transaction. The version is the number in the module's name.

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
    # Work SQL text cannot say, run after ``postgres`` in the same transaction: (connection, timescale=...).
    upgrade_postgres: Callable[..., Awaitable[None]] | None = None
    # The same for SQLite, run after ``sqlite``: (connection).
    upgrade_sqlite: Callable[[Any], None] | None = None


def _load() -> list[Migration]:
    out = []
    for module in ["v0001_init", "v0002_edge_counters", "v0003_device_owners", "v0004_rollup_levels",
                   "v0005_partitions_assemblies", "v0006_models_alerts", "v0007_edge_events",
                   "v0008_console_sessions", "v0009_assembly_parts",
                   "v0010_process_bindings", "v0011_documents"]:
        mod: Any = import_module(f"cloud.migrations.{module}")
        out.append(Migration(int(module[1:5]), module.split("_", 1)[1], mod.SQLITE, mod.POSTGRES,
                             getattr(mod, "upgrade_postgres", None), getattr(mod, "upgrade_sqlite", None)))
    return out


MIGRATIONS: list[Migration] = _load()


def latest_version() -> int:
    return MIGRATIONS[-1].version
