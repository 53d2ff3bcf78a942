"""Copying one database into another: how an installation moves from SQLite to PostgreSQL.

``twincloud copy --to postgresql://...`` reads the configured database and
writes into the target: identities with their token hashes (edges and people
keep their tokens, revoked ones stay revoked), then each device's binding to
its edge (recorded as a move by ``twincloud copy``; a device the target knows
already keeps its binding there), then every device's frames, oldest first,
in batches through the normal ingest path (so the target builds its own
rollups, and copying twice stores nothing twice), and the physics uploads
with their ids. Frames arrive under the edge name ``copy``; the per-edge
counters start afresh.
Stop the service (or its sync endpoint) while copying, then point it at the
target.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cloud.storage.base import DeviceExists, Storage, us

__all__ = ["copy_database"]

log = logging.getLogger(__name__)
CHUNK = 2000
END = 2**62


async def copy_database(src: Storage, dst: Storage, progress: Callable[[str, int], None] | None = None) -> int:
    """Copy identities and frames from ``src`` to ``dst`` (both open); returns the frames newly stored."""
    for kind, name, role, token_hash, created, revoked in await src.identity_rows():
        if not await dst.create_identity(kind, name, role, token_hash or f"revoked:{kind}:{name}", created):
            log.info("%s %s exists in the target already; kept as it is there", kind, name)
            continue
        if revoked is not None:
            await dst.revoke(kind, name, revoked)
    for record in await src.device_records():
        if record.owner is None:
            continue
        try:
            await dst.bind_device(record.name, record.owner, "twincloud copy", "copied with its data",
                                  time.time_ns() // 1000, create=True)
        except DeviceExists:
            log.info("device %s exists in the target already; it keeps its edge there", record.name)
    stored = 0
    for device in await src.devices():
        after = -1
        copied = 0
        while True:
            frames = await src.frames_between(device, after, END, CHUNK)
            if not frames:
                break
            result = await dst.ingest("copy", [(k + 1, f) for k, f in enumerate(frames)], None,
                                      time.time_ns() // 1000, check_owner=False)
            stored += result.stored
            copied += len(frames)
            after = us(frames[-1].ts)
        if progress is not None:
            progress(device, copied)
    have = set(await dst.assembly_ids())
    for assembly_id in await src.assembly_ids():
        upload = None if assembly_id in have else await src.assembly(assembly_id)
        if upload is not None:
            await dst.put_assembly(upload)
    return stored
