"""Physics API: upload assemblies, then check interference, clearance, mass, mates and robot payload.

A plain ``APIRouter`` (prefix ``/api/v1/physics``). Every route states the
role it needs through the role dependencies of ``cloud.auth``: viewers may
read and run checks, uploading needs an operator. Storage comes from the
``get_store`` dependency; the app overrides it
(``app.dependency_overrides[get_store] = ...``). Check handlers are plain
``def``: FastAPI runs them in its thread pool, so the geometry work never
blocks the event loop. Physics errors are answered by the app's error handler
(``cloud.errors``) with a 4xx and ``{"detail": [{"path", "message"}]}`` —
never a 500.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.auth import Operator, Viewer
from cloud.body import read_body
from cloud.errors import BadParameter
from cloud.physics import report
from cloud.physics import schemas as s
from cloud.physics.budget import start_deadline
from cloud.physics.errors import AssemblyNotFoundError
from cloud.physics.picture import layout, picture_out
from cloud.physics.render import MAX_PX, MIN_PX, render_png
from cloud.physics.store import PhysicsStore
from cloud.physics.units import DEFAULT_TOLERANCE_M
from cloud.physics.viewmesh import encode_part, etag

__all__ = ["UPLOAD_SCHEMA", "get_store", "router"]

_store: PhysicsStore | None = None


def get_store() -> PhysicsStore:
    global _store
    if _store is None:
        _store = PhysicsStore()
    return _store


StoreDep = Annotated[PhysicsStore, Depends(get_store)]


async def _budget(store: StoreDep) -> None:
    """Every physics request works within the time budget (the worker thread inherits the deadline)."""
    start_deadline(store.time_budget_s)


router = APIRouter(prefix="/api/v1/physics", tags=["physics"], dependencies=[Depends(_budget)])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
    404: {"description": "unknown assembly id (the reason says why)"},
    413: {"description": "body over the limit (server.max_json_bytes; for uploads physics.max_upload_bytes)"},
    422: {"description": "invalid input, or over the request's time or memory budget; detail lists each "
                         "problem with its path"},
    503: {"description": "the database did not answer; retry after Retry-After"}}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"description": "unreadable body (broken gzip/zstd)"},
    413: {"description": "upload or mesh over the size limit"},
    415: {"description": "unknown mesh format, or a Content-Encoding other than gzip or zstd"}}
UPLOAD_SCHEMA = "AssemblySpec"
_UPLOAD_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": "The assembly as JSON, meshes inline as base64; Content-Encoding gzip or zstd allowed.",
    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{UPLOAD_SCHEMA}"}}}}}


@router.post("/assemblies", response_model=s.AssemblyInfo, status_code=201, responses=_UPLOAD_ERRORS,
             openapi_extra=_UPLOAD_BODY)
async def upload_assembly(request: Request, _: Operator, store: StoreDep) -> s.AssemblyInfo:
    """Upload an assembly (meshes inline as base64; units as in the file format); returns its id.

    The token is checked before the body is read, and the body is read only up to the upload limit.
    """
    raw, _wire = await read_body(request, store.max_upload_bytes, store.max_upload_bytes)
    entry = await asyncio.to_thread(store.put, raw)
    return report.assembly_info(entry.id, entry.assembly)


class AssemblyListed(BaseModel):
    id: str
    name: str
    parts: int
    size: int = Field(description="bytes of the upload as stored")
    uploaded_at: float = Field(description="epoch seconds")


class AssemblyPage(BaseModel):
    assemblies: list[AssemblyListed] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


def _cursor(text: str) -> tuple[int, str]:
    created, _, assembly_id = text.partition("-")
    if not created.isdigit() or len(created) > 19 or len(assembly_id) != 32:
        raise BadParameter("not a cursor this list gave (next_cursor)", "cursor")
    return int(created), assembly_id


@router.get("/assemblies", response_model=AssemblyPage, responses=_ERRORS)
def list_assemblies(_: Viewer, store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                    cursor: Annotated[str | None, Query(max_length=60)] = None) -> AssemblyPage:
    """The uploaded assemblies, newest first: id, name, number of parts, size, when uploaded; a page at a time."""
    found = store.listing(limit + 1, _cursor(cursor) if cursor else None)
    page = found[:limit]
    return AssemblyPage(
        assemblies=[AssemblyListed(id=a.id, name=a.name, parts=a.parts, size=a.size, uploaded_at=a.created / 1e6)
                    for a in page],
        next_cursor=f"{page[-1].created}-{page[-1].id}" if len(found) > limit else None)


@router.get("/assemblies/{assembly_id}", response_model=s.AssemblyInfo, responses=_ERRORS)
def get_assembly(assembly_id: str, _: Viewer, store: StoreDep) -> s.AssemblyInfo:
    """Parts, validation flags and repairs of a stored assembly."""
    entry = store.get(assembly_id)
    return report.assembly_info(entry.id, entry.assembly)


@router.post("/collision/check", response_model=s.CollisionResponse, responses=_ERRORS)
def collision_check(req: s.CollisionRequest, _: Viewer, store: StoreDep) -> s.CollisionResponse:
    """Every pair classified: interfering (volume, centroid, region) or touching; all others clear."""
    entry = store.get(req.assembly_id)
    with entry.posed(report.pose_matrices(entry.assembly, req.poses)) as (asm, world):
        return report.collision(entry.id, asm, world, req.tolerance_m)[0]


@router.post("/collision/clearance", response_model=s.ClearanceResponse, responses=_ERRORS)
def collision_clearance(req: s.ClearanceRequest, _: Viewer, store: StoreDep) -> s.ClearanceResponse:
    """Global minimum clearance and every pair closer than the threshold, with closest points."""
    entry = store.get(req.assembly_id)
    with entry.posed(report.pose_matrices(entry.assembly, req.poses)) as (asm, world):
        return report.clearance(entry.id, asm, world, req.threshold_m, req.tolerance_m)


@router.post("/mass-properties", response_model=s.MassResponse, responses=_ERRORS)
def mass_properties(req: s.MassRequest, _: Viewer, store: StoreDep) -> s.MassResponse:
    """Volume, mass, CoM, inertia (about CoM and a frame), principal axes, area, error bounds."""
    entry = store.get(req.assembly_id)
    frame = None if req.frame is None else req.frame.to_matrix(entry.assembly.unit)
    with entry.posed(None) as (asm, world):
        return report.mass(entry.id, asm, req.parts, frame, world=world)


@router.post("/constraints/solve", response_model=s.ConstraintResponse, responses=_ERRORS)
def constraints_solve(req: s.ConstraintRequest, _: Viewer, store: StoreDep) -> s.ConstraintResponse:
    """Solve part poses from the mates; report violations, redundancy, conflicts and free motions."""
    entry = store.get(req.assembly_id)
    return report.constraints(entry.id, entry.assembly, req, solve=True)[0]


@router.post("/constraints/validate", response_model=s.ConstraintResponse, responses=_ERRORS)
def constraints_validate(req: s.ConstraintRequest, _: Viewer, store: StoreDep) -> s.ConstraintResponse:
    """Check the mates at the given (or stored) poses without moving anything."""
    entry = store.get(req.assembly_id)
    return report.constraints(entry.id, entry.assembly, req, solve=False)[0]


@router.post("/robot-check", response_model=s.RobotCheckResponse, responses=_ERRORS)
def robot_check(req: s.RobotCheckRequest, _: Viewer, store: StoreDep) -> s.RobotCheckResponse:
    """Payload (mass, CoG offset, moments, inertia) against the robot's limits; grip force."""
    entry = store.get(req.assembly_id)
    return report.robot_check(entry.id, entry.assembly, req)


_TOLERANCE = Query(gt=0, le=0.01, description="touching tolerance, m")


@router.get("/assemblies/{assembly_id}/picture.png", response_class=Response, responses={
    200: {"content": {"image/png": {}},
          "description": "PNG: colliding faces in red (interfering) or amber (touching), labels, legend, "
                         "an overview and a zoomed view per problem pair"}, **_ERRORS})
def picture(assembly_id: str, _: Viewer, store: StoreDep,
            tolerance_m: Annotated[float, _TOLERANCE] = DEFAULT_TOLERANCE_M,
            width_px: Annotated[int, Query(ge=MIN_PX, le=MAX_PX, description="picture width, pixels")] = 1200,
            height_px: Annotated[int, Query(ge=MIN_PX, le=MAX_PX, description="picture height, pixels")] = 800,
            ) -> Response:
    """A PNG of the assembly showing where parts touch and interfere."""
    entry = store.get(assembly_id)
    pairs = entry.check(tolerance_m)
    png = render_png(entry.assembly, pairs, tolerance_m=tolerance_m, width_px=width_px, height_px=height_px)
    return Response(png, media_type="image/png")


@router.get("/assemblies/{assembly_id}/picture.json", response_model=s.PictureResponse, responses=_ERRORS)
def picture_json(assembly_id: str, _: Viewer, store: StoreDep,
                 tolerance_m: Annotated[float, _TOLERANCE] = DEFAULT_TOLERANCE_M) -> s.PictureResponse:
    """What the PNG shows, for a viewer to draw: per part its state and colliding faces, per pair its region,
    and the views chosen."""
    entry = store.get(assembly_id)
    pairs = entry.check(tolerance_m)
    return picture_out(entry.id, entry.assembly, layout(entry.assembly, pairs, tolerance_m))


@router.get("/assemblies/{assembly_id}/parts/{part}/mesh", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}},
          "description": "the part's triangles and pose, binary (docs/physics.md, 'The 3D viewer'); ETag"},
    304: {"description": "If-None-Match names the same mesh"},
    413: {"description": "the part has more triangles than the viewer takes"}, **_ERRORS})
def part_mesh(assembly_id: str, part: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")],
              request: Request, _: Viewer, store: StoreDep) -> Response:
    """One part's mesh for a web viewer: float32 vertices in the part frame, uint32 faces, and its pose."""
    entry = store.get(assembly_id)
    found = next((p for p in entry.assembly.parts if p.name == part), None)
    if found is None:
        raise AssemblyNotFoundError(f"assembly {assembly_id} has no part named {part!r}")
    tag = etag(entry.id, found)
    headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(encode_part(found), media_type="application/octet-stream", headers=headers)
