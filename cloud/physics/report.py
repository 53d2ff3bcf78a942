"""Run the physics checks on a loaded assembly and turn the results into response models.

The API and the CLI both call these functions, so a user sees the same
numbers either way. Blocking work: callers run them off the event loop.
"""

from __future__ import annotations

import numpy as np

from cloud.physics import schemas as s
from cloud.physics.assembly import Assembly, Part
from cloud.physics.errors import AssemblyError, PhysicsError, Problem
from cloud.physics.interference import CollisionWorld
from cloud.physics.mass import MassProperties, combine, part_mass_properties
from cloud.physics.pair_result import PairResult, severity
from cloud.physics.robot import check_grip, check_payload
from cloud.physics.solver import MateSystem, SolveResult
from cloud.physics.units import DEFAULT_TOLERANCE_M, METRES_PER

__all__ = ["assembly_info", "clearance", "collision", "constraints", "mass", "pose_matrices", "robot_check"]

NUMERIC_ACCURACY_M = 1e-9  # fcl triangle distances in float64; measured < 1e-14 m in a 20 m cell


def _v(x: np.ndarray | None) -> tuple[float, float, float] | None:
    return None if x is None else _v3(x)


def _v3(x: np.ndarray) -> tuple[float, float, float]:
    return (float(x[0]), float(x[1]), float(x[2]))


def _m(x: np.ndarray) -> tuple:
    return tuple(tuple(float(c) for c in row) for row in x)


def assembly_info(assembly_id: str, asm: Assembly) -> s.AssemblyInfo:
    parts = [s.PartInfo(name=p.name, faces=p.mesh.check.faces, closed=p.mesh.closed, unit=p.unit,
                        material=p.material.id, repairs=list(p.mesh.check.repairs),
                        flags=list(p.mesh.check.flags)) for p in asm.parts]
    return s.AssemblyInfo(id=assembly_id, name=asm.spec.name, unit=asm.unit, parts=parts,
                          mates=len(asm.spec.mates), warnings=asm.warnings)


def _contact(r: PairResult) -> s.ContactOut | None:
    if r.region_min_m is None or r.region_max_m is None:
        return None

    def points(x: np.ndarray | None) -> list[tuple[float, float, float]]:
        return [] if x is None else [(p[0], p[1], p[2]) for p in x[:64].tolist()]

    return s.ContactOut(box_min_m=_v3(r.region_min_m), box_max_m=_v3(r.region_max_m),
                        points_a_m=points(r.points_a_m), points_b_m=points(r.points_b_m))


def pair_out(r: PairResult, unit: str) -> s.PairOut:
    k = METRES_PER[unit]
    return s.PairOut(
        a=r.a, b=r.b, status=r.status, distance_m=r.distance_m, distance_unit=r.distance_m / k,
        point_a_m=_v(r.point_a_m), point_b_m=_v(r.point_b_m), volume_m3=r.volume_m3,
        volume_unit3=None if r.volume_m3 is None else r.volume_m3 / k**3,
        centroid_m=_v(r.centroid_m), depth_m=r.depth_m,
        extent_m=_v(r.extent_m) if r.status == "interfering" else None, contact=_contact(r),
        faces_a=r.faces_a.tolist(), faces_b=r.faces_b.tolist(), note=r.note)


def _pair_warnings(pairs: list[PairResult], tolerance_m: float) -> list[str]:
    """Overlaps thinner than the tolerance (press fits) are touching: say so, they may be meant."""
    thin = [p for p in pairs if p.status == "touching" and p.volume_m3]
    if not thin:
        return []
    worst = max(thin, key=lambda p: p.depth_m or 0.0)
    return [f"{len(thin)} touching pair(s) share volume thinner than the tolerance {tolerance_m * 1e3:.4g} mm "
            f"(deepest {worst.a} / {worst.b}: {(worst.depth_m or 0.0) * 1e3:.4g} mm): an interference fit "
            "shows as interfering with a tolerance below its depth"]


def pose_matrices(asm: Assembly, poses: s.Poses | None) -> dict[str, np.ndarray] | None:
    """A request's ``poses`` as 4×4 matrices in metres (the part names are checked where they are used)."""
    return None if not poses else {k: v.to_matrix(asm.unit) for k, v in poses.items()}


def collision(assembly_id: str, asm: Assembly, world: CollisionWorld,
              tolerance_m: float) -> tuple[s.CollisionResponse, list[PairResult]]:
    pairs = sorted(world.check(tolerance_m), key=severity)
    out = s.CollisionResponse(
        assembly_id=assembly_id, unit=asm.unit, tolerance_m=tolerance_m,
        numeric_accuracy_m=NUMERIC_ACCURACY_M,
        interfering=sum(p.status == "interfering" for p in pairs),
        touching=sum(p.status == "touching" for p in pairs),
        pairs=[pair_out(p, asm.unit) for p in pairs],
        warnings=asm.warnings_at(tolerance_m) + _pair_warnings(pairs, tolerance_m))
    return out, pairs


def clearance(assembly_id: str, asm: Assembly, world: CollisionWorld, threshold_m: float,
              tolerance_m: float = DEFAULT_TOLERANCE_M) -> s.ClearanceResponse:
    """Interfering and touching pairs (as the collision check says) and clear pairs under the threshold.

    The minimum is the worst pair: the deepest interfering, else the closest.
    """
    pairs = world.clearances(threshold_m, tolerance_m)
    minimum = pairs[0] if pairs else world.min_clearance(tolerance_m)
    return s.ClearanceResponse(
        assembly_id=assembly_id, unit=asm.unit, threshold_m=threshold_m,
        tolerance_m=tolerance_m, numeric_accuracy_m=NUMERIC_ACCURACY_M,
        warnings=asm.warnings_at(tolerance_m) + _pair_warnings(pairs, tolerance_m),
        minimum=None if minimum is None else pair_out(minimum, asm.unit),
        pairs=[pair_out(p, asm.unit) for p in pairs])


def _mass_out(mp: MassProperties, unit: str, frame: np.ndarray | None = None) -> s.MassOut:
    moments, axes = mp.principal()
    return s.MassOut(
        volume_m3=mp.volume_m3, mass_kg=mp.mass_kg, com_m=_v3(mp.com_m),
        com_unit=_v3(mp.com_m / METRES_PER[unit]), inertia_com_kgm2=_m(mp.inertia_com),
        inertia_frame_kgm2=None if frame is None else _m(mp.inertia_about(frame)),
        principal_moments_kgm2=_v3(moments), principal_axes=_m(axes),
        surface_area_m2=mp.surface_area_m2, bound_volume_m3=mp.bound_volume_m3,
        bound_com_m=mp.bound_com_m, bound_inertia_kgm2=mp.bound_inertia_kgm2,
        max_deviation_m=mp.max_deviation_m)


def part_masses(asm: Assembly, names: list[str] | None = None, field: str = "parts"
                ) -> list[tuple[Part, MassProperties | None, str | None]]:
    """[(part, local MassProperties or None, error text or None)].

    ``names`` (the request's ``field``) must name parts of the assembly, each once: a name listed
    twice would count the part's mass twice in the total."""
    if names is not None and not names:
        raise AssemblyError(f"name at least one part, or leave {field} out for all", field)
    known, listed = {p.name for p in asm.parts}, names or []
    problems = [Problem(f"{field}[{k}]", f"no part named {n!r} in this assembly" if n not in known
                        else f"part {n!r} is listed twice")
                for k, n in enumerate(listed) if n not in known or n in listed[:k]]
    if problems:
        raise AssemblyError(problems)
    names = names or [p.name for p in asm.parts]
    out: list[tuple[Part, MassProperties | None, str | None]] = []
    for name in names:
        part = asm.part(name)
        try:
            out.append((part, part_mass_properties(part.mesh, part.density_kg_m3, name), None))
        except PhysicsError as exc:
            out.append((part, None, str(exc)))
    return out


def _overlaps(asm: Assembly, world: CollisionWorld, names: set[str], tolerance_m: float
              ) -> tuple[list[s.OverlapMassOut], list[str]]:
    """Volume claimed by two included parts, and the mass the assembly total counts twice for it."""
    out, unknown = [], []
    for r in sorted(world.check(tolerance_m), key=severity):
        if r.a not in names or r.b not in names:
            continue
        if r.volume_m3:
            density = min(asm.part(r.a).density_kg_m3, asm.part(r.b).density_kg_m3)
            out.append(s.OverlapMassOut(a=r.a, b=r.b, volume_m3=r.volume_m3, mass_kg=r.volume_m3 * density))
        elif r.status == "interfering" and r.volume_m3 is None:
            unknown.append(f"{r.a} / {r.b}")
    warnings = []
    if out:
        volume, twice = sum(o.volume_m3 for o in out), sum(o.mass_kg for o in out)
        warnings.append(
            f"{len(out)} pair(s) of parts share volume (tolerance {tolerance_m * 1e3:.4g} mm): "
            f"{volume * 1e9:.6g} mm³ in all is counted in both parts, so the assembly mass counts "
            f"{twice:.6g} kg twice (each overlap at the smaller density of its two parts)")
    if unknown:
        warnings.append("parts cross but their shared volume is unknown (a mesh is not closed), so the "
                        "assembly mass may count it twice: " + ", ".join(unknown))
    return out, warnings


def mass(assembly_id: str, asm: Assembly, names: list[str] | None = None,
         frame: np.ndarray | None = None, world: CollisionWorld | None = None,
         tolerance_m: float = DEFAULT_TOLERANCE_M) -> s.MassResponse:
    """Mass properties of the parts and their total; with ``world``, the overlaps the total counts twice."""
    rows, world_props = [], []
    for part, local, error in part_masses(asm, names):
        placed = None if local is None else local.transformed(part.pose)
        if placed is not None:
            world_props.append(placed)
        rows.append(s.PartMassOut(
            name=part.name, material=part.material.id, density_kg_m3=part.density_kg_m3,
            world=None if placed is None else _mass_out(placed, asm.unit, frame),
            local=None if local is None else _mass_out(local, part.unit), error=error))
    complete = len(world_props) == len(rows)
    total = _mass_out(combine(world_props), asm.unit, frame) if complete and rows else None
    overlaps: list[s.OverlapMassOut] = []
    warnings = list(asm.warnings)
    if world is not None:
        overlaps, more = _overlaps(asm, world, {r.name for r in rows}, tolerance_m)
        warnings += more
    return s.MassResponse(assembly_id=assembly_id, unit=asm.unit, parts=rows, assembly=total,
                          overlaps=overlaps, warnings=warnings)


def constraints(assembly_id: str, asm: Assembly, request: s.ConstraintRequest,
                solve: bool) -> tuple[s.ConstraintResponse, SolveResult]:
    if request.poses:
        unknown = sorted(set(request.poses) - {p.name for p in asm.parts})
        if unknown:
            raise AssemblyError([Problem(f"poses.{n}", f"no part named {n!r} in this assembly") for n in unknown])
        asm = asm.with_poses({k: v.to_matrix(asm.unit) for k, v in request.poses.items()})
    system = MateSystem(asm, request.mates)
    result = system.solve(request.max_starts, request.seed) if solve else system.validate()
    k = METRES_PER[asm.unit]

    def pose_out(p: np.ndarray) -> list[list[float]]:
        q = p.copy()
        q[:3, 3] /= k
        return q.tolist()

    def res(r) -> s.MateResidualOut:
        return s.MateResidualOut(index=r.index, name=r.name, type=r.type,
                                 length_residual_m=r.length_m, angle_residual=r.angle_rad,
                                 violated=r.violated)

    def red(r) -> s.RedundantOut:
        return s.RedundantOut(index=r.index, name=r.name, equations=r.equations,
                              independent=r.independent)

    out = s.ConstraintResponse(
        assembly_id=assembly_id, unit=asm.unit, converged=result.converged,
        tolerance=system.tolerance, poses={n: pose_out(p) for n, p in result.poses.items()},
        violated=[res(r) for r in result.violated], residuals=[res(r) for r in result.residuals],
        redundant=[red(r) for r in result.fully_redundant],
        partly_redundant=[red(r) for r in result.redundant if r.independent > 0],
        conflicting=[system.mate_name(i) for i in result.conflicting],
        dof_total=result.dof_total,
        parts=[s.PartDofOut(part=p.part, dof=p.dof, motions=[
            s.MotionOut(kind=m.kind, direction=_v3(m.direction), point_m=_v(m.point_m),
                        pitch_m_per_rad=m.pitch_m_per_rad) for m in p.motions]) for p in result.parts],
        grounded=result.grounded, starts=result.starts, notes=result.notes)
    return out, result


def robot_check(assembly_id: str, asm: Assembly, request: s.RobotCheckRequest) -> s.RobotCheckResponse:
    rows = part_masses(asm, request.payload_parts, "payload_parts")
    refused = [f"{p.name}: {e}" for p, _, e in rows if e]
    if refused:
        raise AssemblyError("payload mass properties refused: " + "; ".join(refused))
    props = combine([m.transformed(p.pose) for p, m, _ in rows if m is not None])
    payload = check_payload(props, request.flange.to_matrix(asm.unit), request.robot)

    def usage(u) -> s.UsageOut:
        return s.UsageOut(name=u.name, value=u.value, limit=u.limit, unit=u.unit,
                          utilisation_percent=u.percent)

    grip = check_grip(props.mass_kg, request.grip) if request.grip else None
    return s.RobotCheckResponse(
        assembly_id=assembly_id, ok=payload.ok and (grip is None or grip.ok),
        mass_kg=payload.mass_kg, cog_flange_m=_v3(payload.cog_flange_m), offset_m=payload.offset_m,
        inertia_flange_kgm2=_m(payload.inertia_flange_kgm2),
        usages=[usage(u) for u in payload.usages],
        grip_force_per_finger_n=None if grip is None else grip.required_force_per_finger_n,
        grip_total_force_n=None if grip is None else grip.total_normal_force_n,
        grip_usage=None if grip is None or grip.usage is None else usage(grip.usage))
