"""Schema version 9: the number of parts of each uploaded assembly, so that the list of uploads is cheap.

``assemblies.parts`` is filled when an upload is stored; this migration
counts the parts of the uploads stored before (reading each body once), and
indexes uploads by the time they were stored, newest first, for paging.
"""

from __future__ import annotations

import json
from typing import Any

_SQL = """
ALTER TABLE assemblies ADD COLUMN parts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX assemblies_created ON assemblies (created, id)
"""
SQLITE = _SQL
POSTGRES = _SQL


def count_parts(body: bytes) -> int:
    """The number of parts an upload lists (0 when the body is not what an upload should be)."""
    try:
        parts = json.loads(body).get("parts")
    except (ValueError, AttributeError):
        return 0
    return len(parts) if isinstance(parts, list) else 0


def upgrade_sqlite(con: Any) -> None:
    for assembly_id, body in con.execute("SELECT id, body FROM assemblies").fetchall():
        con.execute("UPDATE assemblies SET parts = ? WHERE id = ?", (count_parts(body), assembly_id))


async def upgrade_postgres(con: Any, *, timescale: bool) -> None:  # noqa: ARG001 - the migration signature
    for row in await con.fetch("SELECT id FROM assemblies"):
        body = await con.fetchval("SELECT body FROM assemblies WHERE id = $1", row[0])
        await con.execute("UPDATE assemblies SET parts = $1 WHERE id = $2", count_parts(body), row[0])
