"""Creating, rotating and revoking the tokens of edges and people (used by the CLI and the admin API)."""

from __future__ import annotations

import re
import time
from typing import Literal

from cloud.auth import ROLES, hash_token, new_token
from cloud.storage.base import Storage
from shared.errors import InputError
from shared.frame import DEVICE_ID_PATTERN

__all__ = ["IdentityError", "NameTaken", "SelfDemotion", "UnknownIdentity", "add_edge", "add_user", "revoke", "rotate",
           "set_role"]

_NAME = re.compile(DEVICE_ID_PATTERN)
Kind = Literal["edge", "user"]


class IdentityError(InputError):
    """A name or a role is not usable."""

    def __init__(self, message: str, path: str = "name") -> None:
        super().__init__(message, path)


class NameTaken(IdentityError):
    """An edge or a person with this name exists already."""


class UnknownIdentity(IdentityError):
    """No edge or person has this name."""


class SelfDemotion(IdentityError):
    """An admin asked to drop their own admin role (which could leave nobody to undo it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "role")


def _now() -> int:
    return time.time_ns() // 1000


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise IdentityError(f"name {name!r}: use letters, digits and . _ : - (at most 64, starting with a letter "
                            "or digit)")
    return name


async def _create(storage: Storage, kind: Kind, name: str, role: str) -> str:
    token = new_token(kind)
    if not await storage.create_identity(kind, check_name(name), role, hash_token(token), _now()):
        raise NameTaken(f"{kind} {name!r} exists already")
    return token


async def add_edge(storage: Storage, name: str) -> str:
    """Register an edge; returns its token (shown once; only its hash is stored)."""
    return await _create(storage, "edge", name, "edge")


async def add_user(storage: Storage, name: str, role: str) -> str:
    if role not in ROLES:
        raise IdentityError(f"role {role!r}: choose one of {', '.join(ROLES)}", "role")
    return await _create(storage, "user", name, role)


async def rotate(storage: Storage, kind: Kind, name: str) -> str:
    """A new token for an existing edge or person; the old one stops working."""
    token = new_token(kind)
    if not await storage.set_token(kind, name, hash_token(token)):
        raise UnknownIdentity(f"no {kind} named {name!r}")
    return token


async def revoke(storage: Storage, kind: Kind, name: str) -> None:
    if not await storage.revoke(kind, name, _now()):
        raise UnknownIdentity(f"no {kind} named {name!r}")


async def set_role(storage: Storage, name: str, role: str) -> None:
    """Give a person another role; it applies to their token and every session it opened at once."""
    if role not in ROLES:
        raise IdentityError(f"role {role!r}: choose one of {', '.join(ROLES)}", "role")
    if not await storage.set_role(name, role):
        raise UnknownIdentity(f"no user named {name!r}")
