"""Creating, rotating and revoking the tokens of edges and people (used by the CLI and the admin API)."""

from __future__ import annotations

import re
import time
from typing import Literal

from cloud.auth import ROLES, hash_token, new_token
from cloud.storage.base import Storage, StorageError
from shared.frame import DEVICE_ID_PATTERN

__all__ = ["IdentityError", "add_edge", "add_user", "revoke", "rotate"]

_NAME = re.compile(DEVICE_ID_PATTERN)
Kind = Literal["edge", "user"]


class IdentityError(StorageError):
    """A name is invalid, taken or unknown."""


def _now() -> int:
    return time.time_ns() // 1000


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise IdentityError(f"name {name!r}: use letters, digits and . _ : - (at most 64, starting with a letter "
                            "or digit)")
    return name


async def add_edge(storage: Storage, name: str) -> str:
    """Register an edge; returns its token (shown once; only its hash is stored)."""
    token = new_token("edge")
    try:
        await storage.create_identity("edge", check_name(name), "edge", hash_token(token), _now())
    except StorageError as exc:
        raise IdentityError(str(exc)) from None
    return token


async def add_user(storage: Storage, name: str, role: str) -> str:
    if role not in ROLES:
        raise IdentityError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    token = new_token("user")
    try:
        await storage.create_identity("user", check_name(name), role, hash_token(token), _now())
    except StorageError as exc:
        raise IdentityError(str(exc)) from None
    return token


async def rotate(storage: Storage, kind: Kind, name: str) -> str:
    """A new token for an existing edge or person; the old one stops working."""
    token = new_token(kind)
    if not await storage.set_token(kind, name, hash_token(token)):
        raise IdentityError(f"no {kind} named {name!r}")
    return token


async def revoke(storage: Storage, kind: Kind, name: str) -> None:
    if not await storage.revoke(kind, name, _now()):
        raise IdentityError(f"no {kind} named {name!r}")
