"""The web console's sessions as both backends store them (schema version 8): the record and the SQL.

A session is found by the hash of its cookie, and only while the token that
opened it still belongs to an unrevoked identity, it was used within the idle
limit and is younger than the absolute one. The SQL is written once, with
``?`` placeholders; ``postgres`` numbers them for asyncpg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloud.storage.base import Principal

__all__ = ["SessionRecord", "postgres", "record"]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    principal: Principal
    csrf: str
    created_at: int  # µs
    last_seen: int  # µs


CREATE = ("INSERT INTO console_sessions (id, token_hash, csrf, created_at, last_seen) "
          "VALUES (?, ?, ?, ?, ?)")
# The token that opened a session must still be an unrevoked person's: rotating or revoking it ends the session.
FIND = """SELECT i.kind, i.name, i.role, s.csrf, s.created_at, s.last_seen
    FROM console_sessions s JOIN identities i ON i.token_hash = s.token_hash
    WHERE s.id = ? AND i.kind = 'user' AND i.revoked_at IS NULL AND s.last_seen >= ? AND s.created_at >= ?"""
TOUCH = "UPDATE console_sessions SET last_seen = ? WHERE id = ? AND last_seen < ?"
END = "DELETE FROM console_sessions WHERE id = ?"
# Sessions past a limit, or whose token is no longer a person's valid one: nothing can use them again.
PURGE = """DELETE FROM console_sessions WHERE last_seen < ? OR created_at < ? OR token_hash NOT IN
    (SELECT token_hash FROM identities WHERE token_hash IS NOT NULL AND kind = 'user' AND revoked_at IS NULL)"""


def postgres(sql: str) -> str:
    """The statement with asyncpg's numbered placeholders."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _m: f"${next(count)}", sql)


def record(row: tuple[str, str, str, str, int, int] | None) -> SessionRecord | None:
    if row is None:
        return None
    kind, name, role, csrf, created, seen = row
    return SessionRecord(Principal(kind, name, role), csrf, created, seen)  # type: ignore[arg-type]
