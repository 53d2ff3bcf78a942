"""Newest-first pages over (time, id), as the event and alert lists give them: the SELECT and its cursor.

A page is ordered by a time column, then by id, both descending; the cursor is
the (time, id) of the last row of a page, and the next page holds the rows
strictly after it in that order. The SELECT is built once for both backends:
``Arguments`` writes each placeholder in the backend's style.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from shared.errors import InputError

__all__ = ["Arguments", "decode_keyset_cursor", "encode_keyset_cursor", "newest_first"]


class Arguments:
    """The arguments of one statement; calling it with a value adds it and returns its placeholder, written
    by ``param(n)`` for the n-th (1-based)."""

    def __init__(self, param: Callable[[int], str]) -> None:
        self.values: list[Any] = []
        self._param = param

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return self._param(len(self.values))


def newest_first(table: str, columns: str, time_column: str, where: list[str], arg: Arguments,
                 after: tuple[int, int] | None, limit: int) -> str:
    """The SELECT of the rows matching ``where``, newest first, after the cursor's (time, id), at most ``limit``."""
    if after is not None:
        at, last = after
        where = [*where, f"({time_column} < {arg(at)} OR ({time_column} = {arg(at)} AND id < {arg(last)}))"]
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return (f"SELECT {columns} FROM {table}{clause} "  # noqa: S608
            f"ORDER BY {time_column} DESC, id DESC LIMIT {arg(limit)}")


def encode_keyset_cursor(prefix: str, at: int, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{prefix}{at}:{row_id}".encode()).decode().rstrip("=")


def decode_keyset_cursor(cursor: str, prefix: str) -> tuple[int, int]:
    """(time, id) of a cursor that starts with ``prefix``; InputError for one this service did not hand out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not text.startswith(prefix):
            raise ValueError(text)
        at, last = (int(part) for part in text[len(prefix):].split(":"))
        if not (-2**63 <= at < 2**63 and 0 <= last < 2**63):
            raise ValueError(text)
        return at, last
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InputError("not a cursor this service handed out", "cursor") from None
