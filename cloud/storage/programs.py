"""Reading what the documents left: programs searched by tool, work offset, feature and text; assets; the
MTConnect registry. Written once for both backends over ``Storage.select``.

Programs are listed by when an edge last reported them (``last_seen``), newest first, a page at a time (the
cursor is the (last_seen, id) of a page's last program). Text is matched without case in the program number, its
path and its header comments (stored lower case for that); a tool is a T number (``T12`` or ``12``) or words
matched in the tool's comment and type; a diameter matches within 0.005 mm; a work offset is written as the
program writes it (``G54``, ``G54.1 P2``, any case and spacing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cloud.storage.base import Storage
from cloud.storage.keyset import Arguments, newest_first
from shared.cnc import Estimate
from shared.errors import InputError

__all__ = ["AssetRecord", "DocumentRecord", "LinkCandidate", "ProgramQuery", "ProgramRecordRow", "RegistryDevice",
           "RegistryItem", "UnknownProgram", "assets", "documents", "like_pattern", "link_candidates", "normal_offset",
           "parse_tool", "program_copies", "registry", "search_programs"]

_TOOL_NUMBER = re.compile(r"^[Tt]?(\d{1,9})$")
_OFFSET = re.compile(r"^(G5[4-9])(?:\.1)?\s*(?:P\s*(\d{1,3}))?$", re.IGNORECASE)
_PROGRAM_COLUMNS = ("id, edge, sha256, device, folder, path, number, dialect, units, lines, size, holes, feed_mm, "
                    "rapid_mm, estimate_s, errors, warnings, record, renames, first_seen, last_seen")


class UnknownProgram(InputError):
    """No program with that hash was harvested."""


@dataclass(frozen=True, slots=True)
class ProgramRecordRow:
    id: int
    edge: str
    sha256: str
    device: str | None
    folder: str
    path: str
    number: str | None
    dialect: str
    units: str
    lines: int
    size: int
    holes: int
    feed_mm: float
    rapid_mm: float
    estimate_s: float | None
    errors: int
    warnings: int
    record: str
    renames: str
    first_seen: int
    last_seen: int

    def body(self) -> dict[str, Any]:
        try:
            found = json.loads(self.record)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def rename_list(self) -> list[dict[str, Any]]:
        try:
            found = json.loads(self.renames)
        except ValueError:
            return []
        return found if isinstance(found, list) else []


@dataclass(frozen=True, slots=True)
class ProgramQuery:
    edge: str | None = None
    device: str | None = None
    tool: str | None = None
    diameter_mm: float | None = None
    offset: str | None = None
    text: str | None = None
    dialect: str | None = None
    has_errors: bool | None = None
    min_holes: int | None = None
    limit: int = 100
    after: tuple[int, int] | None = None  # (last_seen, id) of the last program of the previous page


def like_pattern(text: str) -> str:
    r"""A LIKE pattern that finds ``text`` anywhere, lower case, with ``%``, ``_`` and ``\`` taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def parse_tool(tool: str) -> int | None:
    """The T number of ``T12`` or ``12``; None for words."""
    found = _TOOL_NUMBER.match(tool.strip())
    return int(found.group(1)) if found else None


def normal_offset(offset: str) -> str | None:
    """A work offset as the harvester writes it (``g54.1p2`` -> ``G54.1 P2``, ``g55`` -> ``G55``); None when it is
    none."""
    found = _OFFSET.match(offset.strip())
    if found is None:
        return None
    if found.group(2) is not None:
        return f"{found.group(1).upper()}.1 P{int(found.group(2))}"
    return found.group(1).upper() if ".1" not in offset else None


def _program_filter(q: ProgramQuery, param: Callable[[int], str]) -> tuple[str, list[Any]]:
    arg = Arguments(param)
    where: list[str] = []
    # A T number is selective: a row-value IN reads its few tool rows once (an EXISTS per program would walk
    # the programs newest first and probe each). Words, diameters and offsets match many programs: EXISTS stops
    # as soon as a page is full.
    same = "t.edge = programs.edge AND t.sha256 = programs.sha256"
    if q.edge is not None:
        where.append(f"edge = {arg(q.edge)}")
    if q.device is not None:
        where.append(f"device = {arg(q.device)}")
    if q.tool is not None:
        number = parse_tool(q.tool)
        if number is not None:
            where.append(f"(edge, sha256) IN (SELECT edge, sha256 FROM program_tools WHERE tool = {arg(number)})")
        else:
            words = like_pattern(q.tool.strip())
            where.append(f"EXISTS (SELECT 1 FROM program_tools t WHERE {same} AND (lower(t.comment) LIKE "
                         f"{arg(words)} ESCAPE '\\' OR lower(t.type) LIKE {arg(words)} ESCAPE '\\'))")
    if q.diameter_mm is not None:
        where.append(f"EXISTS (SELECT 1 FROM program_tools t WHERE {same} AND t.diameter_mm BETWEEN "
                     f"{arg(q.diameter_mm - 0.005)} AND {arg(q.diameter_mm + 0.005)})")
    if q.offset is not None:
        where.append(f"EXISTS (SELECT 1 FROM program_offsets t WHERE {same} AND t.work_offset = {arg(q.offset)})")
    if q.text is not None:
        where.append(f"search LIKE {arg(like_pattern(q.text))} ESCAPE '\\'")
    if q.dialect is not None:
        where.append(f"dialect = {arg(q.dialect)}")
    if q.has_errors is not None:
        where.append("errors > 0" if q.has_errors else "errors = 0")
    if q.min_holes is not None:
        where.append(f"holes >= {arg(q.min_holes)}")
    return newest_first("programs", _PROGRAM_COLUMNS, "last_seen", where, arg, q.after, q.limit), arg.values


async def search_programs(storage: Storage, query: ProgramQuery) -> list[ProgramRecordRow]:
    return [ProgramRecordRow(*r) for r in await storage.select(lambda p: _program_filter(query, p))]


async def program_copies(storage: Storage, sha256: str) -> list[ProgramRecordRow]:
    """Every edge's copy of a program, the one seen last first."""
    def build(param: Callable[[int], str]) -> tuple[str, list[Any]]:
        return (f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE sha256 = {param(1)} "  # noqa: S608
                "ORDER BY last_seen DESC, id DESC LIMIT 100", [sha256])
    return [ProgramRecordRow(*r) for r in await storage.select(build)]


@dataclass(frozen=True, slots=True)
class LinkCandidate:
    edge: str
    sha256: str
    device: str | None
    path: str
    number: str | None
    name: str
    stem: str
    number_key: str | None
    estimate: Estimate | None
    first_seen: int
    last_seen: int


def _estimate(record: str) -> Estimate | None:
    try:
        found = json.loads(record).get("estimate")
        return None if found is None else Estimate.model_validate(found)
    except (ValueError, AttributeError, ValidationError):
        return None


_LINK_CHUNK = 1000  # values per IN list: PostgreSQL takes at most 32,767 parameters in a statement
MAX_LINK_CANDIDATES = 10_000


async def link_candidates(storage: Storage, names: Sequence[str], stems: Sequence[str],
                          numbers: Sequence[str]) -> list[LinkCandidate]:
    """The programs a run's PROGRAM values may name: by file name, stem or program number (lower case); the
    ``MAX_LINK_CANDIDATES`` seen last. Asked in chunks, however many values there are."""
    def build(column: str, values: Sequence[str]) -> Callable[[Callable[[int], str]], tuple[str, list[Any]]]:
        def sql(param: Callable[[int], str]) -> tuple[str, list[Any]]:
            arg = Arguments(param)
            marks = ", ".join(arg(v) for v in values)
            return ("SELECT edge, sha256, device, path, number, name, stem, number_key, record, first_seen, "
                    f"last_seen FROM programs WHERE {column} IN ({marks}) "  # noqa: S608
                    f"ORDER BY last_seen DESC LIMIT {MAX_LINK_CANDIDATES}"), arg.values
        return sql

    rows: dict[tuple[str, str], tuple[Any, ...]] = {}
    for column, values in (("name", names), ("stem", stems), ("number_key", numbers)):
        for k in range(0, len(values), _LINK_CHUNK):
            for r in await storage.select(build(column, values[k:k + _LINK_CHUNK])):
                rows.setdefault((r[0], r[1]), tuple(r))
    newest = sorted(rows.values(), key=lambda r: r[10], reverse=True)[:MAX_LINK_CANDIDATES]
    return [LinkCandidate(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], _estimate(r[8]), r[9], r[10])
            for r in newest]


@dataclass(frozen=True, slots=True)
class AssetRecord:
    edge: str
    asset_id: str
    asset_type: str
    device_uuid: str | None
    device: str | None
    timestamp: str
    xml: str
    removed: bool
    ts: int


async def assets(storage: Storage, *, edge: str | None, device: str | None, asset_type: str | None,
                 removed: bool, limit: int, after: tuple[str, str] | None) -> list[AssetRecord]:
    """The newest version of each asset, by edge and asset id (``after``: the (edge, id) of the last one shown)."""
    def build(param: Callable[[int], str]) -> tuple[str, list[Any]]:
        arg = Arguments(param)
        where = []
        if edge is not None:
            where.append(f"edge = {arg(edge)}")
        if device is not None:
            where.append(f"(device = {arg(device)} OR device_uuid IN (SELECT uuid FROM mtconnect_devices "
                         f"WHERE device_id = {arg(device)}))")
        if asset_type is not None:
            where.append(f"asset_type = {arg(asset_type)}")
        if not removed:
            where.append("removed = 0")
        if after is not None:
            where.append(f"(edge > {arg(after[0])} OR (edge = {arg(after[0])} AND asset_id > {arg(after[1])}))")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        return ("SELECT edge, asset_id, asset_type, device_uuid, device, asset_ts, xml, removed, ts FROM assets"
                f"{clause} ORDER BY edge, asset_id LIMIT {arg(limit)}"), arg.values  # noqa: S608
    rows = await storage.select(build)
    return [AssetRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8]) for r in rows]


@dataclass(frozen=True, slots=True)
class RegistryItem:
    key: str
    item_id: str
    name: str | None
    category: str
    type: str
    sub_type: str | None
    units: str | None


@dataclass(frozen=True, slots=True)
class RegistryDevice:
    edge: str
    uuid: str
    name: str
    device_id: str
    instance_id: int | None
    ts: int
    items: list[RegistryItem]


async def registry(storage: Storage, device: str) -> list[RegistryDevice]:
    """The MTConnect device models whose frames go to ``device``, newest first, each with its items in order."""
    def heads(param: Callable[[int], str]) -> tuple[str, list[Any]]:
        return ("SELECT edge, uuid, name, device_id, instance_id, ts FROM mtconnect_devices WHERE device_id = "
                f"{param(1)} ORDER BY ts DESC", [device])
    found = []
    for edge, uuid, name, device_id, instance_id, ts in await storage.select(heads):
        def items(param: Callable[[int], str], edge: str = edge, uuid: str = uuid) -> tuple[str, list[Any]]:
            return ("SELECT key, item_id, name, category, type, sub_type, units FROM mtconnect_items WHERE "
                    f"edge = {param(1)} AND uuid = {param(2)} ORDER BY pos", [edge, uuid])
        found.append(RegistryDevice(edge, uuid, name, device_id, instance_id, ts,
                                    [RegistryItem(*r) for r in await storage.select(items)]))
    return found


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: int
    edge: str
    seq: int
    ts: int
    kind: str
    key: str
    device: str | None
    source: str | None
    status: str
    reason: str | None
    received_at: int
    body: str | None


async def documents(storage: Storage, *, edge: str | None, kind: str | None, key: str | None, status: str | None,
                    with_body: bool, limit: int, before: int | None) -> list[DocumentRecord]:
    """The stored documents (the history of changes), the last received first (``before``: an id from a previous
    page)."""
    def build(param: Callable[[int], str]) -> tuple[str, list[Any]]:
        arg = Arguments(param)
        where = [f"{column} = {arg(value)}" for column, value in
                 (("edge", edge), ("kind", kind), ("key", key), ("status", status)) if value is not None]
        if before is not None:
            where.append(f"id < {arg(before)}")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        body = "body" if with_body else "NULL"
        return (f"SELECT id, edge, seq, ts, kind, key, device, source, status, reason, received_at, {body} "
                f"FROM documents{clause} ORDER BY id DESC LIMIT {arg(limit)}"), arg.values  # noqa: S608
    return [DocumentRecord(*r) for r in await storage.select(build)]
