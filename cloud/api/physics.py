"""Physics API: upload assemblies, then check interference, clearance, mass, mates and robot payload.

A plain ``APIRouter`` (prefix ``/api/v1/physics``) so the cloud app mounts it
with its own auth: ``app.include_router(physics.router, dependencies=[...])``.
Storage comes from the ``get_store`` dependency; the app overrides it
(``app.dependency_overrides[get_store] = ...``) or calls ``set_store``.
Handlers are plain ``def``: FastAPI runs them in its thread pool, so the
geometry work never blocks the event loop. Every ``PhysicsError`` becomes a
4xx answer with ``{"detail": [{"path", "message"}]}`` — never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from cloud.physics import report
from cloud.physics import schemas as s
from cloud.physics.assembly import AssemblySpec
from cloud.physics.errors import MeshTooLargeError, PhysicsError
from cloud.physics.render import render_png
from cloud.physics.store import PhysicsStore

__all__ = ["get_store", "router", "set_store"]

router = APIRouter(prefix="/api/v1/physics", tags=["physics"])
_store: PhysicsStore | None = None


def set_store(store: PhysicsStore) -> None:
    global _store
    _store = store


def get_store() -> PhysicsStore:
    global _store
    if _store is None:
        _store = PhysicsStore()
    return _store


StoreDep = Annotated[PhysicsStore, Depends(get_store)]
_ERRORS: dict[int | str, dict[str, Any]] = {413: {"description": "upload or mesh over the size limit"},
           415: {"description": "unknown mesh format"},
           404: {"description": "unknown assembly id"},
           422: {"description": "invalid input; detail lists each problem"}}


@contextmanager
def _as_http() -> Iterator[None]:
    try:
        yield
    except PhysicsError as exc:
        detail = [{"path": p.path, "message": p.message} for p in exc.problems]
        raise HTTPException(status_code=exc.status_code, detail=detail) from exc


@router.post("/assemblies", response_model=s.AssemblyInfo, status_code=201, responses=_ERRORS)
def upload_assembly(spec: AssemblySpec, request: Request, store: StoreDep) -> s.AssemblyInfo:
    """Upload an assembly (meshes inline as base64; units as in the file format); returns its id."""
    declared = request.headers.get("content-length", "")
    with _as_http():
        if declared.isdigit() and int(declared) > store.max_upload_bytes:
            raise MeshTooLargeError(
                f"upload is {int(declared):,} bytes; the limit is {store.max_upload_bytes:,}")
        entry = store.put(spec)
    return report.assembly_info(entry.id, entry.assembly)


@router.get("/assemblies/{assembly_id}", response_model=s.AssemblyInfo, responses=_ERRORS)
def get_assembly(assembly_id: str, store: StoreDep) -> s.AssemblyInfo:
    """Parts, validation flags and repairs of a stored assembly."""
    with _as_http():
        entry = store.get(assembly_id)
    return report.assembly_info(entry.id, entry.assembly)


@router.post("/collision/check", response_model=s.CollisionResponse, responses=_ERRORS)
def collision_check(req: s.CollisionRequest, store: StoreDep) -> s.CollisionResponse:
    """Every pair classified: interfering (volume, centroid, region) or touching; others separated."""
    with _as_http():
        entry = store.get(req.assembly_id)
        return report.collision(entry.id, entry.assembly, entry.world, req.tolerance_m)[0]


@router.post("/collision/clearance", response_model=s.ClearanceResponse, responses=_ERRORS)
def collision_clearance(req: s.ClearanceRequest, store: StoreDep) -> s.ClearanceResponse:
    """Global minimum clearance and every pair closer than the threshold, with closest points."""
    with _as_http():
        entry = store.get(req.assembly_id)
        return report.clearance(entry.id, entry.assembly, entry.world, req.threshold_m)


@router.post("/mass-properties", response_model=s.MassResponse, responses=_ERRORS)
def mass_properties(req: s.MassRequest, store: StoreDep) -> s.MassResponse:
    """Volume, mass, CoM, inertia (about CoM and a frame), principal axes, area, error bounds."""
    with _as_http():
        entry = store.get(req.assembly_id)
        frame = None if req.frame is None else req.frame.to_matrix(entry.assembly.unit)
        return report.mass(entry.id, entry.assembly, req.parts, frame)


@router.post("/constraints/solve", response_model=s.ConstraintResponse, responses=_ERRORS)
def constraints_solve(req: s.ConstraintRequest, store: StoreDep) -> s.ConstraintResponse:
    """Solve part poses from the mates; report violations, redundancy, conflicts and free motions."""
    with _as_http():
        entry = store.get(req.assembly_id)
        return report.constraints(entry.id, entry.assembly, req, solve=True)[0]


@router.post("/constraints/validate", response_model=s.ConstraintResponse, responses=_ERRORS)
def constraints_validate(req: s.ConstraintRequest, store: StoreDep) -> s.ConstraintResponse:
    """Check the mates at the given (or stored) poses without moving anything."""
    with _as_http():
        entry = store.get(req.assembly_id)
        return report.constraints(entry.id, entry.assembly, req, solve=False)[0]


@router.post("/robot-check", response_model=s.RobotCheckResponse, responses=_ERRORS)
def robot_check(req: s.RobotCheckRequest, store: StoreDep) -> s.RobotCheckResponse:
    """Payload (mass, CoG offset, moments, inertia) against the robot's limits; grip force."""
    with _as_http():
        entry = store.get(req.assembly_id)
        return report.robot_check(entry.id, entry.assembly, req)


@router.get("/assemblies/{assembly_id}/picture.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "PNG, interfering regions in red"}, **_ERRORS})
def picture(assembly_id: str, store: StoreDep,
            tolerance_m: Annotated[float, Query(gt=0, le=0.01, description="touching tolerance, m")] = 1e-5
            ) -> Response:
    """A PNG of the assembly with interfering regions highlighted."""
    with _as_http():
        entry = store.get(assembly_id)
        pairs = entry.world.check(tolerance_m)
        return Response(render_png(entry.assembly, pairs), media_type="image/png")
