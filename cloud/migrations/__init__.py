"""Versioned schema migrations, one module per version, each with SQLite and PostgreSQL text.

A database records the versions it has in ``schema_migrations``; opening a
store applies the missing ones in order, inside a transaction (PostgreSQL
under an advisory lock, so several processes starting together migrate once).
Never edit a released migration: add the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

__all__ = ["MIGRATIONS", "Migration", "latest_version"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgres: str


def _load() -> list[Migration]:
    out = []
    for version, module in enumerate(["v0001_init", "v0002_edge_counters", "v0003_device_owners"], start=1):
        mod = import_module(f"cloud.migrations.{module}")
        out.append(Migration(version, module.split("_", 1)[1], mod.SQLITE, mod.POSTGRES))
    return out


MIGRATIONS: list[Migration] = _load()


def latest_version() -> int:
    return MIGRATIONS[-1].version
