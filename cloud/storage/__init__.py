"""Time-series storage behind one interface: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from cloud.config import DatabaseConfig
from cloud.storage.base import Storage

__all__ = ["Storage", "open_storage"]


def open_storage(config: DatabaseConfig) -> Storage:
    """The store a config names (not yet opened: call ``await store.open()``)."""
    if config.backend == "sqlite":
        from cloud.storage.sqlite import SQLiteStorage

        return SQLiteStorage(config.sqlite_path, readers=config.pool_size, busy_timeout=config.busy_timeout,
                             synchronous=config.sqlite_synchronous)
    from cloud.storage.postgres import PostgresStorage

    return PostgresStorage(config.url.get_secret_value(), pool_size=config.pool_size,
                           timescale=config.timescaledb == "auto")
