"""Which edge a device belongs to: binding a device to an edge and moving it (used by the CLI and the admin API).

A device belongs to the first edge that writes it; only that edge's frames of
it are stored. An admin may bind a device before it first sends (so that no
other edge can claim it) or move it to another edge; each such change is
recorded with who made it, when and why.
"""

from __future__ import annotations

import time

from cloud.identities import IdentityError, UnknownIdentity, check_name
from cloud.storage.base import DeviceMove, Storage

__all__ = ["MAX_REASON", "add_device", "move_device"]

MAX_REASON = 500


def _check(storage_edges: list[str], device: str, edge: str, reason: str) -> None:
    check_name(device)
    if len(reason) > MAX_REASON:
        raise IdentityError(f"at most {MAX_REASON} characters (got {len(reason):,})", "reason")
    if any(ord(c) < 32 or ord(c) == 127 for c in reason):
        raise IdentityError("a reason is one line of text without control characters", "reason")
    if edge not in storage_edges:
        raise UnknownIdentity(f"no edge named {edge[:64]!r} (twincloud edge list shows them)", "edge")


async def _bind(storage: Storage, device: str, edge: str, by: str, reason: str, create: bool) -> DeviceMove | None:
    _check([e["name"] for e in await storage.identities("edge")], device, edge, reason)
    return await storage.bind_device(device, edge, by, reason, time.time_ns() // 1000, create=create)


async def add_device(storage: Storage, device: str, edge: str, by: str, reason: str = "") -> DeviceMove:
    """Bind a device that has not sent yet to ``edge``; DeviceExists when it is known already."""
    move = await _bind(storage, device, edge, by, reason, create=True)
    assert move is not None  # a new device always gets a binding
    return move


async def move_device(storage: Storage, device: str, edge: str, by: str, reason: str = "") -> DeviceMove | None:
    """Move a known device to ``edge``; None when it belongs to that edge already (nothing is recorded)."""
    return await _bind(storage, device, edge, by, reason, create=False)
