"""CNC programs, their runs, MTConnect assets and device models over HTTP (read by every role from viewer up).

Programs come from the edges' program harvesters (``program`` documents), one per edge and content hash, and are
searched by tool, work offset, feature and text (``cloud.storage.programs``). Runs are read from a machine's
MTConnect EXECUTION and PROGRAM series when asked (``cloud.runs`` has the rules), each linked to the program it
ran; a machine's completed runs calibrate its estimate, shown next to the raw one.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from cloud.api.twin import parse_time
from cloud.auth import Viewer
from cloud.context import Ctx
from cloud.errors import BadParameter
from cloud.querygate import client_of
from cloud.runs import Calibration, Run
from cloud.runsquery import device_runs, runs_of_program
from cloud.storage.keyset import decode_keyset_cursor, encode_keyset_cursor
from cloud.storage.programs import (
    ProgramQuery,
    ProgramRecordRow,
    UnknownProgram,
    assets,
    documents,
    normal_offset,
    program_copies,
    registry,
    search_programs,
)
from shared.errors import InputError
from shared.frame import DEVICE_ID_PATTERN, TS_MAX, TS_MIN

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["cnc programs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a bad time, cursor or search parameter"},
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
}
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "no such program or device"}}
RUNS_SPAN_S = 30 * 86400  # runs are read from 30 days before `to` unless `from` says otherwise
Ident = Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)]
Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="the program's sha256")]
Start = Annotated[str | None, Query(alias="from", max_length=40, description="at or after: epoch seconds or ISO 8601; "
                                                                         "default 30 days before to")]
Stop = Annotated[str | None, Query(alias="to", max_length=40, description="before: epoch seconds or ISO 8601; "
                                                                      "default now")]
NO_NUL = r"^[^\x00]*$"  # a NUL character matches no stored text, and PostgreSQL refuses one in a parameter


class ProgramOut(BaseModel):
    sha256: str
    edge: str
    device: str | None
    folder: str
    path: str
    number: str | None
    dialect: str
    units: str
    lines: int
    size: int
    tools: list[int] = Field(description="T numbers in program order")
    offsets: list[str]
    holes: int
    feed_mm: float
    rapid_mm: float
    estimate_s: float | None = Field(description="the harvester's raw estimate")
    errors: int = Field(description="diagnostics of level error")
    warnings: int
    first_seen: float
    last_seen: float


class ProgramPage(BaseModel):
    programs: list[ProgramOut] = Field(description="the ones an edge reported last first")
    next_cursor: str | None


class ProgramDetail(ProgramOut):
    header: list[str]
    tool_uses: list[dict[str, Any]] = Field(description="each use of a tool with its comment, diameter, type, "
                                                        "speeds, feeds, lengths, holes and time")
    subprograms: list[str]
    estimate: dict[str, Any] | None = Field(description="the estimate and its parts")
    diagnostics: list[dict[str, Any]]
    renames: list[dict[str, Any]] = Field(description="{from, to, ts} for each rename seen")
    copies: list[dict[str, Any]] = Field(description="the same program on other edges or paths: {edge, path, "
                                                     "last_seen}")


class RunOut(BaseModel):
    device: str
    program: str | None = Field(description="the PROGRAM value the machine reported")
    start: float
    end: float | None = Field(description="null while the run is still going")
    duration_s: float | None
    paused_s: float
    completed: bool
    end_state: str | None = Field(description="PROGRAM_COMPLETED, READY, STOPPED, UNAVAILABLE or PROGRAM_CHANGED")
    sha256: str | None = Field(description="the harvested program it ran, when one matches")
    edge: str | None
    path: str | None
    estimate_s: float | None = Field(description="that program's raw estimate")
    calibrated_s: float | None = Field(description="the estimate calibrated on this machine's measured runs")


class CalibrationOut(BaseModel):
    device: str
    method: str = Field(description="factor: one factor on the total (fewer than 8 runs, or of fewer than 5 "
                                    "different programs); parts: a weight per part "
                                    "of the estimate and a constant")
    weights: dict[str, float] = Field(description="feed, rapid, tool_change, dwell (and other) weights; constant s")
    runs: int = Field(description="completed runs measured")


class RunPage(BaseModel):
    runs: list[RunOut] = Field(description="oldest first")
    calibrations: list[CalibrationOut]
    truncated: bool = Field(description="the series had more points than are read at once: narrow from/to")


class AssetOut(BaseModel):
    edge: str
    asset_id: str
    asset_type: str
    device_uuid: str | None
    device: str | None
    timestamp: str
    removed: bool
    xml: str
    ts: float


class AssetPage(BaseModel):
    assets: list[AssetOut]
    next_cursor: str | None


class ItemOut(BaseModel):
    key: str
    item_id: str
    name: str | None
    category: str
    type: str
    sub_type: str | None
    units: str | None


class DeviceModelOut(BaseModel):
    edge: str
    uuid: str
    name: str
    instance_id: int | None
    ts: float
    items: list[ItemOut]


def _out(row: ProgramRecordRow) -> ProgramOut:
    body = row.body()
    tools = [t.get("tool") for t in body.get("tools", []) if isinstance(t, dict) and isinstance(t.get("tool"), int)]
    offsets = [o for o in body.get("offsets", []) if isinstance(o, str)]
    return ProgramOut(sha256=row.sha256, edge=row.edge, device=row.device, folder=row.folder, path=row.path,
                      number=row.number, dialect=row.dialect, units=row.units, lines=row.lines, size=row.size,
                      tools=tools, offsets=offsets, holes=row.holes, feed_mm=row.feed_mm, rapid_mm=row.rapid_mm,
                      estimate_s=row.estimate_s, errors=row.errors, warnings=row.warnings,
                      first_seen=row.first_seen / 1e6, last_seen=row.last_seen / 1e6)


@router.get("/programs", response_model=ProgramPage, responses=_ERRORS)
async def list_programs(
    who: Viewer, ctx: Ctx, edge: Ident = None, device: Ident = None,
    tool: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL,
                                      description="a T number (T12 or 12) or words of a tool's comment or "
                                                  "type")] = None,
    diameter: Annotated[float | None, Query(gt=0, le=10_000, description="a tool diameter in mm (within "
                                                                         "0.005)")] = None,
    offset: Annotated[str | None, Query(min_length=2, max_length=16, description="a work offset: G54..G59, "
                                                                                 "G54.1 P1..")] = None,
    text: Annotated[str | None, Query(min_length=1, max_length=100, pattern=NO_NUL,
                                      description="in the number, path or header comments, without "
                                                  "case")] = None,
    dialect: Literal["fanuc", "haas", "linuxcnc", "siemens", "okuma"] | None = None,
    has_errors: Annotated[bool | None, Query(description="true: programs with error diagnostics; false: "
                                                         "without")] = None,
    min_holes: Annotated[int | None, Query(ge=0, le=10**9)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> ProgramPage:
    """Harvested programs, the ones an edge reported last first, a page at a time."""
    work = None
    if offset is not None:
        work = normal_offset(offset)
        if work is None:
            raise BadParameter(f"not a work offset: {offset!r}; write G54..G59 or G54.1 P1..P300", "offset")
    try:
        after = decode_keyset_cursor(cursor, "p") if cursor else None
    except InputError as exc:
        raise BadParameter(str(exc.problems[0].message), "cursor") from None
    query = ProgramQuery(edge, device, tool, diameter, work, text, dialect, has_errors, min_holes, limit + 1, after)
    async with ctx.queries.slot(client_of(who)):  # a text search scans the programs
        found = await search_programs(ctx.storage, query)
    page = found[:limit]
    return ProgramPage(programs=[_out(r) for r in page], next_cursor=encode_keyset_cursor(
        "p", page[-1].last_seen, page[-1].id) if len(found) > limit else None)


@router.get("/programs/{sha256}", response_model=ProgramDetail, responses={**_ERRORS, **_UNKNOWN})
async def show_program(sha256: Sha, _: Viewer, ctx: Ctx, edge: Ident = None) -> ProgramDetail:
    """A program with its tools, offsets, estimate, diagnostics and renames (the copy of ``edge`` when given,
    else the one seen last)."""
    copies = await program_copies(ctx.storage, sha256)
    chosen = next((c for c in copies if edge is None or c.edge == edge), None)
    if chosen is None:
        raise UnknownProgram(f"no program with sha256 {sha256}" + (f" on edge {edge!r}" if edge else ""), "sha256")
    body = chosen.body()
    return ProgramDetail(**_out(chosen).model_dump(), header=body.get("header", []), tool_uses=body.get("tools", []),
                         subprograms=body.get("subprograms", []), estimate=body.get("estimate"),
                         diagnostics=body.get("diagnostics", []), renames=chosen.rename_list(),
                         copies=[{"edge": c.edge, "path": c.path, "last_seen": c.last_seen / 1e6}
                                 for c in copies if c is not chosen])


def _window(start: str | None, stop: str | None) -> tuple[int, int]:
    hi = parse_time("to", stop, min(TS_MAX, time.time()))
    lo = parse_time("from", start, max(TS_MIN, hi / 1e6 - RUNS_SPAN_S))
    if lo >= hi:
        raise BadParameter("from must be before to", "from")
    return lo, hi


def _run_out(run: Run, calibration: Calibration | None) -> RunOut:
    return RunOut(device=run.device, program=run.program, start=run.start / 1e6,
                  end=None if run.end is None else run.end / 1e6, duration_s=run.duration_s, paused_s=run.paused_s,
                  completed=run.completed, end_state=run.end_state, sha256=run.sha256, edge=run.edge, path=run.path,
                  estimate_s=run.estimate_s,
                  calibrated_s=calibration.apply(run.estimate) if calibration else None)


def _calibration_out(c: Calibration) -> CalibrationOut:
    weights = {**dict(zip(("feed", "rapid", "tool_change", "dwell"), c.fit.weights, strict=True)),
               "constant": c.fit.constant}
    return CalibrationOut(device=c.device, method=c.fit.method, weights=weights, runs=c.runs)


@router.get("/programs/{sha256}/runs", response_model=RunPage, responses={**_ERRORS, **_UNKNOWN})
async def program_runs(sha256: Sha, who: Viewer, ctx: Ctx, start: Start = None, stop: Stop = None) -> RunPage:
    """The runs of a program on the machines of the edges that harvested it, with each machine's calibration."""
    lo, hi = _window(start, stop)
    copies = await program_copies(ctx.storage, sha256)
    if not copies:
        raise UnknownProgram(f"no program with sha256 {sha256}", "sha256")
    async with ctx.queries.slot(client_of(who)):
        runs, calibrations, truncated = await runs_of_program(
            ctx.storage, sha256, sorted({c.edge for c in copies}), sorted({c.device for c in copies if c.device}),
            lo, hi)
    return RunPage(runs=[_run_out(r, calibrations.get(r.device)) for r in runs],
                   calibrations=[_calibration_out(c) for c in calibrations.values()], truncated=truncated)


@router.get("/devices/{name}/runs", response_model=RunPage, responses={**_ERRORS, **_UNKNOWN})
async def machine_runs(name: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)], who: Viewer, ctx: Ctx,
                       start: Start = None, stop: Stop = None) -> RunPage:
    """The program runs of a machine (from its MTConnect EXECUTION and PROGRAM), oldest first, each linked to the
    program it ran, with the machine's calibration."""
    lo, hi = _window(start, stop)
    async with ctx.queries.slot(client_of(who)):
        found = await device_runs(ctx.storage, name, lo, hi)
    cal = found.calibration
    return RunPage(runs=[_run_out(r, cal) for r in found.runs],
                   calibrations=[_calibration_out(cal)] if cal else [], truncated=found.truncated)


@router.get("/devices/{name}/mtconnect", response_model=list[DeviceModelOut], responses=_ERRORS)
async def machine_model(name: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)], _: Viewer,
                        ctx: Ctx) -> list[DeviceModelOut]:
    """The MTConnect device models whose data goes to this device: each key with its category, type, sub-type and
    units (empty for a device that is not an MTConnect one)."""
    return [DeviceModelOut(edge=m.edge, uuid=m.uuid, name=m.name, instance_id=m.instance_id, ts=m.ts / 1e6,
                           items=[ItemOut(key=i.key, item_id=i.item_id, name=i.name, category=i.category, type=i.type,
                                          sub_type=i.sub_type, units=i.units) for i in m.items])
            for m in await registry(ctx.storage, name)]


@router.get("/assets", response_model=AssetPage, responses=_ERRORS)
async def list_assets(
    _: Viewer, ctx: Ctx, edge: Ident = None, device: Ident = None,
    asset_type: Annotated[str | None, Query(alias="type", min_length=1, max_length=64, pattern=NO_NUL,
                                            description="CuttingTool, File, ...")] = None,
    removed: Annotated[bool, Query(description="include assets the agent marked removed")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=800)] = None,
) -> AssetPage:
    """MTConnect assets (cutting tools, files, ...) as the edges last reported them, by edge and asset id."""
    after = _asset_cursor(cursor) if cursor else None
    found = await assets(ctx.storage, edge=edge, device=device, asset_type=asset_type, removed=removed,
                         limit=limit + 1, after=after)
    page = found[:limit]
    return AssetPage(assets=[AssetOut(edge=a.edge, asset_id=a.asset_id, asset_type=a.asset_type,
                                      device_uuid=a.device_uuid, device=a.device, timestamp=a.timestamp,
                                      removed=a.removed, xml=a.xml, ts=a.ts / 1e6) for a in page],
                     next_cursor=_asset_token(page[-1].edge, page[-1].asset_id) if len(found) > limit else None)


def _asset_token(edge: str, asset_id: str) -> str:
    return base64.urlsafe_b64encode(f"a{edge}\n{asset_id}".encode()).decode().rstrip("=")


def _asset_cursor(cursor: str) -> tuple[str, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("a") or "\n" not in text or "\x00" in text:
            raise ValueError(text)
        edge, asset_id = text[1:].split("\n", 1)
        return edge, asset_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadParameter("not a cursor this service handed out", "cursor") from None


class DocumentOut(BaseModel):
    id: int = Field(description="the cloud's id: pass the last one shown as ?before= for the next page")
    edge: str
    seq: int = Field(description="the edge's document sequence")
    ts: float = Field(description="when the edge harvested it (0 when unreadable)")
    kind: str
    key: str
    device: str | None
    source: str | None
    status: Literal["ok", "invalid"]
    reason: str | None = Field(description="why it is invalid, in plain words")
    received_at: float
    body: dict[str, Any] | None = Field(description="the body as sent, with ?body=true")


@router.get("/documents", response_model=list[DocumentOut], responses=_ERRORS)
async def list_documents(
    _: Viewer, ctx: Ctx, edge: Ident = None,
    kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = None,
    key: Annotated[str | None, Query(min_length=1, max_length=256, pattern=NO_NUL)] = None,
    status: Literal["ok", "invalid"] | None = None,
    body: Annotated[bool, Query(description="include each body (up to 256 KiB each)")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="the id of the last one shown")] = None,
) -> list[DocumentOut]:
    """The documents as the edges sent them, the last received first: the history of changes of a key
    (``?kind=asset&key=T1.1``), or those kept as invalid with their reason (``?status=invalid``)."""
    found = await documents(ctx.storage, edge=edge, kind=kind, key=key, status=status, with_body=body,
                            limit=limit, before=before)
    return [DocumentOut(id=d.id, edge=d.edge, seq=d.seq, ts=d.ts / 1e6, kind=d.kind, key=d.key, device=d.device,
                        source=d.source, status="ok" if d.status == "ok" else "invalid", reason=d.reason,
                        received_at=d.received_at / 1e6, body=_body(d.body) if body else None) for d in found]


def _body(text: str | None) -> dict[str, Any] | None:
    try:
        found = json.loads(text) if text else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
