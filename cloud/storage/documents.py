"""Storing the edges' documents in the sync batch's transaction, the same way in SQLite and PostgreSQL.

Each document is stored once per (edge, seq) in ``documents`` (the history). The
rest is decided in Python from three small reads (which sequences are stored
already, the newest document per key, the programs known by hash) and written
with plain statements both backends take: ``documents_latest`` points at the
newest document per (edge, kind, key) by the edge's time, then sequence; a
newest valid document updates what is read from it (``programs``,
``assets``, the MTConnect registry). A program seen again under another path
is a rename: its path changes and ``renames`` records it. Invalid documents are
kept in the history with their reason and change nothing else.
"""

from __future__ import annotations

import json
import posixpath
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloud.documents import AssetBody, DeviceModelBody, DocumentIn
from shared.cnc import ProgramRecord

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Writes", "number_key", "plan_documents", "purge_documents_pg", "purge_documents_sqlite",
           "store_documents_pg", "store_documents_sqlite"]

_NUMBER = re.compile(r"^[Oo:]?0*(\d{1,12})$")
MAX_RENAMES = 50  # renames kept per program, the newest
# Retention of the history of documents: what was received before the cutoff and is no longer the newest of its key
# (an asset's or a device model's older versions), and the refused ones. Every version of a program stays: each is a
# row of ``programs``, which a copy of the database rebuilds from its document. ``documents_latest`` keeps counting.
_PURGE = ("DELETE FROM documents WHERE received_at < {0} AND (status <> 'ok' OR (kind <> 'program' AND NOT EXISTS "
          "(SELECT 1 FROM documents_latest l WHERE l.edge = documents.edge AND l.kind = documents.kind "
          "AND l.key = documents.key AND l.seq = documents.seq)))")


def number_key(number: str | None) -> str | None:
    """How program numbers compare: ``O0123``, ``o123``, ``:123`` and ``123`` are all ``123``; a name is
    compared without case."""
    if not number:
        return None
    text = number.strip()
    found = _NUMBER.match(text)
    return found.group(1) if found else text.lower()


def name_and_stem(path: str) -> tuple[str, str]:
    """A program path's file name and stem, lower case (``sub/O1234.NC`` -> ``o1234.nc``, ``o1234``)."""
    name = posixpath.basename(path.replace("\\", "/")).lower()
    return name, name.rsplit(".", 1)[0] if "." in name else name


@dataclass(slots=True)
class ProgramState:
    path: str
    renames: list[dict[str, Any]]
    first_seen: int
    last_seen: int


@dataclass(slots=True)
class Writes:
    """The statements' rows, in the order they run."""

    documents: list[tuple[Any, ...]] = field(default_factory=list)
    latest: list[tuple[Any, ...]] = field(default_factory=list)
    programs_new: list[tuple[Any, ...]] = field(default_factory=list)
    programs_seen: list[tuple[Any, ...]] = field(default_factory=list)
    tools: list[tuple[Any, ...]] = field(default_factory=list)
    offsets: list[tuple[Any, ...]] = field(default_factory=list)
    assets: list[tuple[Any, ...]] = field(default_factory=list)
    devices: list[tuple[Any, ...]] = field(default_factory=list)
    items_cleared: list[tuple[Any, ...]] = field(default_factory=list)
    items: list[tuple[Any, ...]] = field(default_factory=list)
    # The newest device model per uuid (its row and its items): one batch can carry several models of a device
    # (a re-probe after an agent restart), and only the newest one's items may be written.
    models: dict[str, tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = field(default_factory=dict)


_STATEMENTS: list[tuple[str, str]] = [
    ("documents", "INSERT INTO documents (edge, seq, ts, kind, key, device, source, body, status, reason, "
                  "received_at) VALUES ({}) ON CONFLICT (edge, seq) DO NOTHING"),
    ("latest", "INSERT INTO documents_latest (edge, kind, key, seq, ts, versions) VALUES ({}) "
               "ON CONFLICT (edge, kind, key) DO UPDATE SET seq = excluded.seq, ts = excluded.ts, "
               "versions = excluded.versions"),
    ("programs_new", "INSERT INTO programs (edge, sha256, device, folder, path, name, stem, number, number_key, "
                     "dialect, units, lines, size, holes, feed_mm, rapid_mm, estimate_s, errors, warnings, search, "
                     "record, renames, first_seen, last_seen) VALUES ({})"),
    ("programs_seen", "UPDATE programs SET device = {}, folder = {}, path = {}, name = {}, stem = {}, record = {}, "
                      "renames = {}, first_seen = {}, last_seen = {} WHERE edge = {} AND sha256 = {}"),
    ("tools", "INSERT INTO program_tools (edge, sha256, pos, tool, comment, type, diameter_mm) VALUES ({})"),
    ("offsets", "INSERT INTO program_offsets (edge, sha256, work_offset) VALUES ({}) ON CONFLICT DO NOTHING"),
    ("assets", "INSERT INTO assets (edge, asset_id, asset_type, device_uuid, device, asset_ts, xml, removed, ts) "
               "VALUES ({}) ON CONFLICT (edge, asset_id) DO UPDATE SET asset_type = excluded.asset_type, "
               "device_uuid = excluded.device_uuid, device = excluded.device, asset_ts = excluded.asset_ts, "
               "xml = excluded.xml, removed = excluded.removed, ts = excluded.ts"),
    ("devices", "INSERT INTO mtconnect_devices (edge, uuid, name, device_id, instance_id, ts) VALUES ({}) "
                "ON CONFLICT (edge, uuid) DO UPDATE SET name = excluded.name, device_id = excluded.device_id, "
                "instance_id = excluded.instance_id, ts = excluded.ts"),
    ("items_cleared", "DELETE FROM mtconnect_items WHERE edge = {} AND uuid = {}"),
    ("items", "INSERT INTO mtconnect_items (edge, uuid, pos, key, item_id, name, category, type, sub_type, units) "
              "VALUES ({}) ON CONFLICT DO NOTHING"),
]


def _statement(template: str, param: Callable[[int], str]) -> str:
    n = template.count("{}")
    if n == 1:  # one VALUES list: as many placeholders as the row has columns
        cols = template.split("(", 2)[1].split(")", 1)[0].count(",") + 1
        return template.format(", ".join(param(k) for k in range(1, cols + 1)))
    return template.format(*(param(k) for k in range(1, n + 1)))


def _program_row(edge: str, doc: DocumentIn, rec: ProgramRecord, renames: list[dict[str, Any]]) -> tuple[Any, ...]:
    name, stem = name_and_stem(rec.path)
    errors = sum(1 for d in rec.diagnostics if d.level == "error")
    search = "\n".join([rec.number or "", rec.path, *rec.header]).lower()
    return (edge, rec.sha256, doc.device, rec.folder, rec.path, name, stem, rec.number, number_key(rec.number),
            rec.dialect, rec.units, rec.lines, rec.size, rec.holes, rec.feed_mm, rec.rapid_mm,
            rec.estimate.total_s if rec.estimate else None, errors, len(rec.diagnostics) - errors, search, doc.body,
            json.dumps(renames), doc.ts, doc.ts)


def _plan_program(w: Writes, edge: str, doc: DocumentIn, rec: ProgramRecord, known: dict[str, ProgramState]) -> None:
    have = known.get(rec.sha256)
    if have is None:
        renames = ([{"from": rec.renamed_from, "to": rec.path, "ts": doc.ts / 1e6}]
                   if rec.renamed_from and rec.renamed_from != rec.path else [])
        w.programs_new.append(_program_row(edge, doc, rec, renames))
        # Comments and types are kept lower case by Python for the word search: SQL's lower() folds ASCII letters
        # only (SQLite; PostgreSQL in the C locale), and the record keeps them as written for reading.
        w.tools.extend((edge, rec.sha256, pos, t.tool, t.comment and t.comment.lower(), t.type and t.type.lower(),
                        t.diameter_mm) for pos, t in enumerate(rec.tools))
        w.offsets.extend((edge, rec.sha256, o) for o in dict.fromkeys(rec.offsets))
        known[rec.sha256] = ProgramState(rec.path, renames, doc.ts, doc.ts)
        return
    if doc.ts >= have.last_seen:
        if rec.path != have.path:
            have.renames = [*have.renames, {"from": have.path, "to": rec.path, "ts": doc.ts / 1e6}][-MAX_RENAMES:]
            have.path = rec.path
        have.last_seen = doc.ts
    have.first_seen = min(have.first_seen, doc.ts)
    name, stem = name_and_stem(have.path)
    w.programs_seen.append((doc.device, rec.folder, have.path, name, stem, doc.body, json.dumps(have.renames),
                            have.first_seen, have.last_seen, edge, rec.sha256))


def _plan_newest(w: Writes, edge: str, doc: DocumentIn) -> None:
    rec = doc.record
    if isinstance(rec, AssetBody):
        w.assets.append((edge, rec.asset_id, rec.asset_type, rec.device_uuid, doc.device, rec.timestamp, rec.xml,
                         int(rec.removed), doc.ts))
    elif isinstance(rec, DeviceModelBody):
        w.models[rec.uuid] = ((edge, rec.uuid, rec.name, rec.device_id, rec.instance_id, doc.ts),
                              [(edge, rec.uuid, pos, i.key, i.id, i.name, i.category, i.type, i.sub_type, i.units)
                               for pos, i in enumerate(rec.items)])


def plan_documents(edge: str, docs: Sequence[DocumentIn], stored: set[int],
                   latest: dict[tuple[str, str], tuple[int, int, int]], programs: dict[str, ProgramState],
                   now_us: int) -> tuple[Writes, int]:
    """What to write for ``docs`` given what is stored (``stored`` sequences, ``latest`` (ts, seq, versions) per
    (kind, key), ``programs`` by hash); and how many documents are new."""
    w = Writes()
    new = 0
    for doc in sorted(docs, key=lambda d: d.seq):
        if doc.seq in stored:
            continue
        new += 1
        w.documents.append(doc.row(edge, now_us))
        if doc.status != "ok":
            continue
        have = latest.get((doc.kind, doc.key))
        newest = have is None or (doc.ts, doc.seq) > (have[0], have[1])
        versions = (have[2] if have else 0) + 1
        if newest:
            latest[(doc.kind, doc.key)] = (doc.ts, doc.seq, versions)
        elif have is not None:
            latest[(doc.kind, doc.key)] = (have[0], have[1], versions)
        if isinstance(doc.record, ProgramRecord):
            _plan_program(w, edge, doc, doc.record, programs)
        elif newest:
            _plan_newest(w, edge, doc)
    # One row per key, so that no statement touches a row twice.
    w.assets = list({r[1]: r for r in w.assets}.values())
    for uuid, (row, items) in w.models.items():
        w.devices.append(row)
        w.items_cleared.append((edge, uuid))
        w.items.extend(items)
    last_seen = {r[-1]: r for r in w.programs_seen}
    w.programs_seen = list(last_seen.values())
    w.latest = [(edge, kind, key, seq, ts, versions) for (kind, key), (ts, seq, versions) in latest.items()]
    return w, new


# --- SQLite (inside the ingest transaction) --------------------------------------------------


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def store_documents_sqlite(con: sqlite3.Connection, edge: str, docs: Sequence[DocumentIn], now_us: int) -> int:
    """Store the documents not stored yet and what is read from them; returns how many were new."""
    if not docs:
        return 0
    seqs = [d.seq for d in docs]
    stored = {r[0] for r in con.execute(f"SELECT seq FROM documents WHERE edge = ? AND seq IN ({_marks(len(seqs))})",
                                        [edge, *seqs])}
    keys = sorted({d.key for d in docs if d.status == "ok"})
    latest = {(r[0], r[1]): (r[2], r[3], r[4]) for r in con.execute(
        f"SELECT kind, key, ts, seq, versions FROM documents_latest WHERE edge = ? AND key IN ({_marks(len(keys))})",
        [edge, *keys])} if keys else {}
    shas = sorted({d.record.sha256 for d in docs if isinstance(d.record, ProgramRecord)})
    programs = {r[0]: ProgramState(r[1], json.loads(r[2]), r[3], r[4]) for r in con.execute(
        "SELECT sha256, path, renames, first_seen, last_seen FROM programs WHERE edge = ? AND sha256 IN "
        f"({_marks(len(shas))})", [edge, *shas])} if shas else {}
    writes, new = plan_documents(edge, docs, stored, latest, programs, now_us)
    for name, template in _STATEMENTS:
        rows = getattr(writes, name)
        if rows:
            con.executemany(_statement(template, lambda _n: "?"), rows)
    return new


def purge_documents_sqlite(con: sqlite3.Connection, before: int) -> int:
    """Remove the history of documents received before ``before`` (``_PURGE``); rows removed."""
    return con.execute(_PURGE.format("?"), (before,)).rowcount


# --- PostgreSQL --------------------------------------------------------------------------------


async def store_documents_pg(con: asyncpg.Connection, edge: str, docs: Sequence[DocumentIn], now_us: int) -> int:
    if not docs:
        return 0
    stored = {r[0] for r in await con.fetch("SELECT seq FROM documents WHERE edge = $1 AND seq = ANY($2::bigint[])",
                                            edge, [d.seq for d in docs])}
    keys = sorted({d.key for d in docs if d.status == "ok"})
    latest = {(r[0], r[1]): (r[2], r[3], r[4]) for r in await con.fetch(
        "SELECT kind, key, ts, seq, versions FROM documents_latest WHERE edge = $1 AND key = ANY($2::text[])",
        edge, keys)} if keys else {}
    shas = sorted({d.record.sha256 for d in docs if isinstance(d.record, ProgramRecord)})
    programs = {r[0]: ProgramState(r[1], json.loads(r[2]), r[3], r[4]) for r in await con.fetch(
        "SELECT sha256, path, renames, first_seen, last_seen FROM programs WHERE edge = $1 AND "
        "sha256 = ANY($2::text[])", edge, shas)} if shas else {}
    writes, new = plan_documents(edge, docs, stored, latest, programs, now_us)
    for name, template in _STATEMENTS:
        rows = getattr(writes, name)
        if rows:
            await con.executemany(_statement(template, lambda n: f"${n}"), rows)
    return new


async def purge_documents_pg(con: asyncpg.Connection, before: int) -> int:
    status = str(await con.execute(_PURGE.format("$1"), before))
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
