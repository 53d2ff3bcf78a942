"""Copying one database into another: how an installation moves from SQLite to PostgreSQL.

``twincloud copy --to postgresql://...`` reads the configured database and
writes into the target: identities with their token hashes (edges and people
keep their tokens, revoked ones stay revoked), then each device's binding to
its edge (recorded as a move by ``twincloud copy``; a device the target knows
already keeps its binding there), then every device's frames, oldest first,
in batches through the normal ingest path (so the target builds its own
rollups, and copying twice stores nothing twice), the physics uploads
with their ids, the model versions with their numbers and the rules that
assign them, and the edges' documents (CNC programs, assets, MTConnect device
models) under their own edges and sequences, with what is read from them.
Frames arrive under the edge name ``copy``; the per-edge counters start
afresh. The edges' alerts and model reports are not copied: the edges report
their models again with their next batch.
Stop the service (or its sync endpoint) while copying, then point it at the
target.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from cloud.documents import DocumentIn, read_documents
from cloud.storage.base import DeviceExists, Storage, us
from cloud.storage.registry import NewModel

__all__ = ["copy_database"]

log = logging.getLogger(__name__)
CHUNK = 2000
DOCUMENT_CHUNK = 500
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
    await _copy_models(src, dst)
    await _copy_documents(src, dst)
    return stored


async def _copy_documents(src: Storage, dst: Storage) -> None:
    """Every edge's documents in sequence order, checked again as the sync handler does (copying twice stores
    nothing twice: a document is stored once per edge and sequence)."""
    after: tuple[str, int] = ("", 0)
    while True:
        def page(param: Callable[[int], str], at: tuple[str, int] = after) -> tuple[str, list[Any]]:
            return ("SELECT edge, seq, ts, kind, key, device, source, body, status, reason FROM documents WHERE "
                    f"edge > {param(1)} OR (edge = {param(2)} AND seq > {param(3)}) ORDER BY edge, seq "
                    f"LIMIT {DOCUMENT_CHUNK}", [at[0], at[0], at[1]])
        rows = await src.select(page)
        if not rows:
            return
        for edge in dict.fromkeys(r[0] for r in rows):
            await dst.put_documents(edge, [_document(r) for r in rows if r[0] == edge], time.time_ns() // 1000)
        after = (rows[-1][0], rows[-1][1])


def _document(row: tuple[Any, ...]) -> DocumentIn:
    _edge, seq, ts, kind, key, device, source, body, status, reason = row
    if status != "ok":
        return DocumentIn(seq, ts, kind, key, device, source, body, status, reason)
    entry = {"seq": seq, "document": {"ts": ts / 1e6, "kind": kind, "key": key, "device": device, "source": source,
                                      "body": json.loads(body)}}
    return read_documents([entry])[0][0]


async def _copy_models(src: Storage, dst: Storage) -> None:
    """Every model version under its own number, then every rule (a rule the target has is replaced)."""
    for m in await src.models():
        found = await src.model_package(m.name, m.version)
        if found is None:  # deleted while copying
            continue
        stored, new = await dst.put_model(NewModel(m.name, m.sha256, m.kind, m.schema, m.card, found[1], m.uploaded_by,
                                                   m.uploaded_at), m.version)
        if not new and (stored.name, stored.version) != (m.name, m.version):
            log.warning("model %s version %d is in the target already as %s version %d; rules naming it are not "
                        "copied", m.name, m.version, stored.name, stored.version)
        elif not new and stored.sha256 != m.sha256:
            log.warning("model %s version %d in the target is another package; kept as it is there", m.name,
                        m.version)
    for rule in await src.assignments():
        target = await dst.model_version(rule.model, rule.version)
        if target is not None and target.sha256 == rule.sha256:
            await dst.assign(rule.scope, rule.target, rule.model, rule.version, rule.assigned_by, rule.assigned_at)
