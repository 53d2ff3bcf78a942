"""Command line: ``twincloud physics check ASSEMBLY.json`` prints a readable physics report.

Also ``python -m cloud.physics.cli check ...`` until the ``twincloud`` CLI exists.
Exit status: 0 all clear, 1 findings (interference, violated mates, robot
over its limits), 2 bad input (the reasons are printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from cloud.physics.errors import PhysicsError
from cloud.physics.units import METRES_PER

# trimesh, fcl, scipy and matplotlib are imported by `physics check` itself: every other twincloud
# command builds this parser too and must not pay seconds for them.

__all__ = ["add_subcommands", "main"]

EXIT_OK, EXIT_FINDINGS, EXIT_INPUT = 0, 1, 2


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``physics check``."""
    physics = subparsers.add_parser("physics", help="physics checks of CAD assemblies")
    sub = physics.add_subparsers(dest="physics_command", required=True)
    check = sub.add_parser("check", help="interference, clearance, mass properties and mates")
    check.add_argument("assembly", type=Path, help="assembly JSON file (meshes relative to it)")
    check.add_argument("--png", type=Path, help="write a picture: colliding faces in red (interfering) and "
                       "amber (touching), labels, legend, a zoomed view per problem pair")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument("--clearance", type=_mm(0.0, 100_000.0, low_open=False), default=5.0, metavar="MM",
                       help="list pairs closer than this, mm (default 5; 0..100000, as the API)")
    check.add_argument("--tolerance", type=_mm(0.0, 10.0), default=0.01, metavar="MM",
                       help="touching tolerance, mm (default 0.01; above 0, at most 10, as the API)")
    check.add_argument("--solve", action="store_true", help="solve the mates instead of validating")
    check.add_argument("--robot", type=Path, metavar="ROBOT.json",
                       help="robot check request: robot, flange, grip, payload_parts")
    check.set_defaults(handler=_check)


def _mm(low: float, high: float, *, low_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a length in mm within the bounds the API puts on it (a negative or NaN
    tolerance would classify pairs differently in the check and the clearance report)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(
                f"must be {'above' if low_open else 'at least'} {low:g} and at most {high:g} mm (got {text})")
        return value

    return parse


def _fmt(x: float, unit: str, k: float) -> str:
    return f"{x / k:.6g} {unit}"


def _point(x, unit: str, k: float) -> str:
    return "(" + ", ".join(f"{c / k:.6g}" for c in x) + f") {unit}"


def _pair_line(p, unit: str, k: float) -> str:
    """One pair in one state: interfering with its overlap, touching with its gap, clear with its distance."""
    line = f"{p.status.upper():<12} {p.a} / {p.b}"
    if p.status == "interfering":
        if p.volume_m3 is not None:
            line += f": volume {p.volume_unit3:.6g} {unit}³ ({p.volume_m3:.4g} m³)"
        if p.depth_m is not None:
            line += f", depth {_fmt(p.depth_m, unit, k)} (2V/S)"
        if p.extent_m is not None:
            line += ", extent " + " × ".join(f"{e / k:.4g}" for e in p.extent_m) + f" {unit}"
        if p.centroid_m is not None:
            line += f", centroid {_point(p.centroid_m, unit, k)}"
    elif p.status == "touching":
        line += f": gap {_fmt(p.distance_m, unit, k)}"
        if p.volume_m3:
            line += f", overlap {p.volume_unit3:.6g} {unit}³ {_fmt(p.depth_m or 0.0, unit, k)} thick (2V/S)"
        if p.contact is not None:
            line += f", contact box {_point(p.contact.box_min_m, unit, k)} – {_point(p.contact.box_max_m, unit, k)}"
    else:
        line += f": {_fmt(p.distance_m, unit, k)}"
        if p.point_a_m is not None and p.point_b_m is not None:
            line += f" between {_point(p.point_a_m, unit, k)} and {_point(p.point_b_m, unit, k)}"
    return line + (f"  [{p.note}]" if p.note else "")


def _text(asm_info, coll, clear, mass, mates, robot) -> str:
    u = asm_info.unit
    k = METRES_PER[u]
    out = [f"Assembly {asm_info.name!r}: {len(asm_info.parts)} parts, {asm_info.mates} mates, "
           f"unit {u}"]
    for p in asm_info.parts:
        state = "closed" if p.closed else "NOT CLOSED"
        out.append(f"  {p.name:<20} {p.faces:>7} faces  {state:<10} {p.material}")
        out += [f"      repaired: {r}" for r in p.repairs] + [f"      note: {f}" for f in p.flags]
    out.append(f"\nInterference (touching tolerance {_fmt(coll.tolerance_m, u, k)}; distances "
               f"accurate to {coll.numeric_accuracy_m:.0e} m)")
    if not coll.pairs:
        out.append("  no touching or interfering pairs")
    out += [f"  {_pair_line(p, u, k)}" for p in coll.pairs]
    out.append(f"\nClearance (interfering, touching, and clear pairs under {_fmt(clear.threshold_m, u, k)}; "
               f"touching tolerance {_fmt(clear.tolerance_m, u, k)})")
    if clear.minimum:
        m = clear.minimum
        worst = f"{m.status} {m.a} / {m.b}" + ("" if m.status == "interfering" else f", {_fmt(m.distance_m, u, k)}")
        out.append(f"  worst pair: {worst}")
    out += [f"  {_pair_line(p, u, k)}" for p in clear.pairs]
    out.append("\nMass properties (SI)")
    for p in mass.parts:
        if p.world is None:
            out.append(f"  {p.name:<20} refused: {p.error}")
        else:
            w = p.world
            out.append(f"  {p.name:<20} {w.mass_kg:10.5g} kg  V {w.volume_m3:.5g} m³  CoM "
                       f"({', '.join(f'{c / k:.5g}' for c in w.com_m)}) {u}  "
                       f"±{w.bound_volume_m3 / w.volume_m3 * 100:.2g}% (tessellation)")
    if mass.assembly:
        a = mass.assembly
        out.append(f"  {'ASSEMBLY':<20} {a.mass_kg:10.5g} kg  CoM "
                   f"({', '.join(f'{c / k:.5g}' for c in a.com_m)}) {u}")
        out.append("  principal moments " + ", ".join(f"{m:.5g}" for m in a.principal_moments_kgm2)
                   + " kg·m²")
    for o in mass.overlaps:
        out.append(f"  overlap {o.a} / {o.b}: {o.volume_m3 * 1e9:.6g} mm³ counted in both parts "
                   f"({o.mass_kg:.5g} kg twice)")
    if mates is not None:
        out.append(f"\nMates: {'all satisfied' if mates.converged else 'NOT all satisfied'}; "
                   f"{mates.dof_total} degrees of freedom remain")
        out += [f"  violated: {v.name}: {_fmt(v.length_residual_m, u, k)}, {v.angle_residual:.2g} rad"
                for v in mates.violated]
        out += [f"  redundant: {r.name}" for r in mates.redundant]
        if mates.conflicting:
            out.append("  conflicting set: " + ", ".join(mates.conflicting))
        for p in mates.parts:
            if p.dof:
                kinds = ", ".join(f"{m.kind} ({', '.join(f'{c:.3g}' for c in m.direction)})"
                                  for m in p.motions)
                out.append(f"  {p.part}: {p.dof} DOF: {kinds}")
        out += [f"  note: {n}" for n in mates.notes]
    if robot is not None:
        out.append(f"\nRobot payload: {'OK' if robot.ok else 'OVER LIMIT'} ({robot.mass_kg:.4g} kg, "
                   f"CoG {robot.offset_m * 1000:.4g} mm from the flange)")
        for us in robot.usages + ([robot.grip_usage] if robot.grip_usage else []):
            pct = "n/a" if us.utilisation_percent is None else f"{us.utilisation_percent:.1f}%"
            out.append(f"  {us.name:<40} {us.value:10.4g} / {us.limit} {us.unit}  {pct}")
        if robot.grip_force_per_finger_n is not None:
            out.append(f"  grip force needed: {robot.grip_force_per_finger_n:.4g} N per finger")
    warnings = list(dict.fromkeys(coll.warnings + clear.warnings + mass.warnings))
    if warnings:
        out.append("\nWarnings")
        out += [f"  {w}" for w in warnings]
    return "\n".join(out)


def _check(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from cloud.physics import report
    from cloud.physics import schemas as s
    from cloud.physics.assembly import load_assembly_file
    from cloud.physics.interference import CollisionWorld
    from cloud.physics.render import render_png
    from shared.validation import validation_problems

    asm = load_assembly_file(args.assembly)
    world = CollisionWorld(asm.parts)
    info = report.assembly_info(args.assembly.name, asm)
    coll, pairs = report.collision(info.id, asm, world, args.tolerance * 1e-3)
    clear = report.clearance(info.id, asm, world, args.clearance * 1e-3, args.tolerance * 1e-3)
    mass = report.mass(info.id, asm, world=world, tolerance_m=args.tolerance * 1e-3)
    mates = None
    if asm.spec.mates:
        req = s.ConstraintRequest(assembly_id=info.id)
        mates = report.constraints(info.id, asm, req, solve=args.solve)[0]
    robot = None
    if args.robot is not None:
        try:
            raw = json.loads(args.robot.read_text(encoding="utf-8"))
            req_r = s.RobotCheckRequest.model_validate({"assembly_id": info.id, **raw})
        except ValidationError as exc:
            for problem in validation_problems(exc, s.RobotCheckRequest):
                print(f"error: {args.robot}: {problem}", file=sys.stderr)
            return EXIT_INPUT
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            print(f"error: {args.robot}: {exc}", file=sys.stderr)
            return EXIT_INPUT
        robot = report.robot_check(info.id, asm, req_r)
    if args.png:
        args.png.write_bytes(render_png(asm, pairs, tolerance_m=args.tolerance * 1e-3))
    if args.json:
        doc = {"assembly": info.model_dump(), "collision": coll.model_dump(),
               "clearance": clear.model_dump(), "mass": mass.model_dump(),
               "mates": None if mates is None else mates.model_dump(),
               "robot": None if robot is None else robot.model_dump()}
        print(json.dumps(doc, indent=2))
    else:
        print(_text(info, coll, clear, mass, mates, robot))
        if args.png:
            print(f"\npicture written to {args.png}")
    findings = coll.interfering or (mates is not None and not mates.converged) or (
        robot is not None and not robot.ok)
    return EXIT_FINDINGS if findings else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twincloud")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "physics":
        argv = ["physics", *argv]  # `python -m cloud.physics.cli check ...`
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except PhysicsError as exc:
        for p in exc.problems:
            print(f"error: {p}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
