"""Schema version 5: samples and frames partitioned by week on PostgreSQL; uploaded assemblies in the database.

``assemblies`` holds each physics upload as it was sent (the assembly JSON,
meshes inline), with its id, the assembly's name, the SHA-256 and size of the
bytes and when it was stored, so that every process and replica serving the
database finds every upload (``cloud.physics.store``).

On PostgreSQL, ``frames`` and ``samples`` become tables partitioned by week
(``cloud.storage.partitions``): the rows stay where they are, the old table
becomes the partition of everything before the current week. ``samples`` is
left alone when it is, or is about to become, a TimescaleDB hypertable.
SQLite keeps its tables as they are.
"""

from __future__ import annotations

import time
from typing import Any

SQLITE = """
CREATE TABLE assemblies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""

POSTGRES = """
CREATE TABLE assemblies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created BIGINT NOT NULL,
    body BYTEA NOT NULL
);
"""


async def upgrade_postgres(con: Any, *, timescale: bool) -> None:
    """Partition ``frames``, and ``samples`` unless TimescaleDB keeps it (``timescale``: it is, or will be,
    a hypertable). Inside the migration's transaction, after ``POSTGRES``."""
    from cloud.storage.partitions import convert

    now_us = time.time_ns() // 1000
    await convert(con, "frames", now_us)
    if not timescale:
        await convert(con, "samples", now_us)
