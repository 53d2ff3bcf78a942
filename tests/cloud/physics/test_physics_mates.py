"""Mate suite: generated assemblies with hand-derived DOF, random (bad) starting poses.

Links are 100 mm boxes; joints sit at (±40, 0, ±50) mm on their faces so
consecutive revolute axes are parallel but distinct (a planar chain: link k
of an open chain can make min(k, 3) independent motions).
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from physics_helpers import assembly, mesh_of, part
from scipy.spatial.transform import Rotation

from cloud.physics.solver import MateSystem

BOX = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0)))


def ax(p, o, d=(0, 0, 1)):
    return {"part": p, "kind": "axis", "origin": list(o), "direction": list(d)}


def pl(p, o, d):
    return {"part": p, "kind": "plane", "origin": list(o), "direction": list(d)}


def pt(p, o):
    return {"part": p, "kind": "point", "origin": list(o)}


def revolute(a, b):
    return [{"type": "concentric", "a": ax(a, (40, 0, 50)), "b": ax(b, (-40, 0, -50))},
            {"type": "coincident", "a": pl(a, (0, 0, 50), (0, 0, 1)), "b": pl(b, (0, 0, -50), (0, 0, -1))}]


def slider(a, b):
    return [{"type": "coincident", "a": pl(a, (0, 0, 50), (0, 0, 1)), "b": pl(b, (0, 0, -50), (0, 0, -1))},
            {"type": "coincident", "a": pl(a, (0, 50, 0), (0, 1, 0)), "b": pl(b, (0, 50, 0), (0, 1, 0)),
             "alignment": "aligned"}]


def ball(a, b):
    return [{"type": "coincident", "a": pt(a, (0, 0, 50)), "b": pt(b, (0, 0, -50))}]


def _build(n_free: int, mates: list[dict], rng: np.random.Generator):
    parts = [part("g", BOX, np.eye(4), fixed=True)]
    for k in range(1, n_free + 1):
        pose = np.eye(4)
        pose[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        pose[:3, 3] = rng.normal(scale=0.3, size=3)
        parts.append(part(f"l{k}", BOX, pose))
    return assembly(parts, mates)


def _suite():
    rng = np.random.default_rng(99)
    cases = []
    for n in (1, 2, 3, 4):  # open revolute chains
        for rep in range(3):
            mates = sum((revolute(f"l{k - 1}" if k > 1 else "g", f"l{k}") for k in range(1, n + 1)), [])
            dofs = {f"l{k}": min(k, 3) for k in range(1, n + 1)}
            cases.append((f"chain{n}-{rep}", n, mates, n, dofs, False, []))
    for rep in range(4):
        cases.append((f"slider-{rep}", 1, slider("g", "l1"), 1, {"l1": 1}, False, []))
        cases.append((f"ball-{rep}", 1, ball("g", "l1"), 3, {"l1": 3}, False, []))
        cases.append((f"fixed-{rep}", 1, [{"type": "fixed", "a": {"part": "l1", "kind": "point"}}],
                      0, {"l1": 0}, False, []))
        cases.append((f"revolute+angle-{rep}", 1, revolute("g", "l1") + [
            {"type": "angle", "angle_deg": 60.0, "a": ax("g", (0, 0, 0), (1, 0, 0)),
             "b": ax("l1", (0, 0, 0), (1, 0, 0))}], 0, {"l1": 0}, False, []))
        cases.append((f"slider+distance-{rep}", 1, slider("g", "l1") + [
            {"type": "distance", "distance": 25.0, "a": pl("g", (50, 0, 0), (1, 0, 0)),
             "b": pl("l1", (-50, 0, 0), (-1, 0, 0))}], 0, {"l1": 0}, False, []))
        cases.append((f"tangent-{rep}", 1, [
            {"type": "tangent", "a": pl("g", (0, 0, 50), (0, 0, 1)),
             "b": {"part": "l1", "kind": "cylinder", "origin": [0, 0, 0], "direction": [1, 0, 0],
                   "radius": 50.0}}], 4, {"l1": 4}, False, []))
        cases.append((f"perpendicular+slider-{rep}", 1, [
            {"type": "coincident", "a": pl("g", (0, 0, 50), (0, 0, 1)), "b": pl("l1", (0, 0, -50), (0, 0, -1))},
            {"type": "perpendicular", "a": ax("g", (0, 0, 0), (1, 0, 0)), "b": ax("l1", (0, 0, 0), (1, 0, 0))}],
            2, {"l1": 2}, False, []))
        # closed loop: parallelogram four-bar (one DOF, with redundant planar equations)
        loop = revolute("g", "l1") + [
            {"type": "concentric", "a": ax("g", (-40, 0, 50)), "b": ax("l2", (-40, 0, -50))},
            {"type": "coincident", "a": pl("g", (0, 0, 50), (0, 0, 1)), "b": pl("l2", (0, 0, -50), (0, 0, -1))},
            {"type": "concentric", "a": ax("l1", (0, 0, 50)), "b": ax("l3", (40, 0, -50))},
            {"type": "concentric", "a": ax("l2", (0, 0, 50)), "b": ax("l3", (-40, 0, -50))},
            {"type": "coincident", "a": pl("l1", (0, 0, 50), (0, 0, 1)), "b": pl("l3", (0, 0, -50), (0, 0, -1))}]
        cases.append((f"loop-{rep}", 3, loop, 1, None, False, []))
        # redundant: a revolute plus a duplicate of its concentric mate
        red = revolute("g", "l1") + [revolute("g", "l1")[0]]
        cases.append((f"redundant-{rep}", 1, red, 1, {"l1": 1}, False, []))
        # conflicting: faces coincident and 30 mm apart at once, plus an unrelated mate
        bad = [{"type": "coincident", "a": pl("g", (0, 0, 50), (0, 0, 1)), "b": pl("l1", (0, 0, -50), (0, 0, -1))},
               {"type": "distance", "distance": 30.0, "a": pl("g", (0, 0, 50), (0, 0, 1)),
                "b": pl("l1", (0, 0, -50), (0, 0, -1))},
               {"type": "perpendicular", "a": ax("g", (0, 0, 0), (1, 0, 0)), "b": ax("l1", (0, 0, 0), (1, 0, 0))}]
        cases.append((f"conflict-{rep}", 1, bad, None, None, True, [0, 1]))
    return [(name, _build(n, mates, rng), dof, dofs, bad, conflict)
            for name, n, mates, dof, dofs, bad, conflict in cases]


SUITE = _suite()


def test_the_suite_has_at_least_50_assemblies() -> None:
    assert len(SUITE) >= 50


@pytest.mark.parametrize(("name", "asm", "dof", "part_dofs", "inconsistent", "conflict"), SUITE,
                         ids=[c[0] for c in SUITE])
def test_mates_solve_from_random_starts_with_exact_dof(name, asm, dof, part_dofs, inconsistent,
                                                       conflict) -> None:
    result = MateSystem(asm).solve(max_starts=10, seed=1)
    if inconsistent:
        assert not result.converged
        assert result.conflicting == conflict
        return
    assert result.converged, [v.name for v in result.violated]
    assert result.dof_total == dof
    if part_dofs is not None:
        assert {p.part: p.dof for p in result.parts if p.part in part_dofs} == part_dofs
    if name.startswith("redundant"):
        assert [r.index for r in result.fully_redundant] == [2]


def test_revolute_free_motion_is_a_rotation_about_the_joint_axis() -> None:
    asm = _build(1, revolute("g", "l1"), np.random.default_rng(5))
    result = MateSystem(asm).solve()
    (motion,) = next(p for p in result.parts if p.part == "l1").motions
    assert motion.kind == "rotation"
    assert abs(motion.direction[2]) == pytest.approx(1.0)
    assert motion.point_m[:2] == pytest.approx([0.04, 0.0], abs=1e-9)


def test_validate_reports_the_violation_without_moving() -> None:
    asm = _build(1, ball("g", "l1"), np.random.default_rng(6))
    result = MateSystem(asm).validate()
    assert not result.converged
    assert result.violated[0].length_m > 0.01
    np.testing.assert_array_equal(result.poses["l1"], asm.part("l1").pose)


MORE_MATES = [  # (name, mates on g and l1 [and l2], free parts, remaining DOF)
    ("point-on-plane", [{"type": "coincident", "a": pt("l1", (10, 0, 0)), "b": pl("g", (0, 0, 50), (0, 0, 1))}],
     1, 5),
    ("point-on-axis", [{"type": "coincident", "a": pt("l1", (10, 0, 0)), "b": ax("g", (0, 0, 0))}], 1, 4),
    ("point-distance", [{"type": "distance", "distance": 120.0, "a": pt("g", (0, 0, 0)), "b": pt("l1", (0, 0, 0))}],
     1, 5),
    ("parallel-axes", [{"type": "parallel", "a": ax("g", (0, 0, 0)), "b": ax("l1", (0, 0, 0), (1, 0, 0))}], 1, 4),
    ("point-to-point-distance-on-plane", [
        {"type": "distance", "distance": 20.0, "a": pt("l1", (0, 0, -50)), "b": pl("g", (0, 0, 50), (0, 0, 1))},
        {"type": "parallel", "a": ax("g", (0, 0, 0)), "b": ax("l1", (0, 0, 0))}], 1, 3),
    ("fixed-to-a-moving-part", revolute("g", "l1") + [
        {"type": "fixed", "a": {"part": "l2", "kind": "point"}, "b": {"part": "l1", "kind": "point"}}], 2, 1),
]


@pytest.mark.parametrize(("name", "mates", "n_free", "dof"), MORE_MATES, ids=[m[0] for m in MORE_MATES])
def test_other_mate_kinds_solve_with_exact_dof(name, mates, n_free, dof) -> None:
    asm = _build(n_free, mates, np.random.default_rng(7))
    result = MateSystem(asm).solve(seed=2)
    assert result.converged, [v.name for v in result.violated]
    assert result.dof_total == dof


def _conflicting_chain(n: int, at: int) -> tuple[list[dict], list[int]]:
    """An open revolute chain of n links with a duplicate concentric mate on every 4th joint
    (redundant) and a 'distance 30 mm' between the faces that joint ``at`` makes coincident.

    Only that joint's coincident mate fixes the gap the distance mate asks for (the joint's
    concentric mate leaves the slide along its axis free, and the chain is open), so the one
    minimal conflicting set is {coincident of joint ``at``, the distance mate}: indices
    2·(at − 1) + 1 and the last one.
    """
    mates = sum((revolute(f"l{k - 1}" if k > 1 else "g", f"l{k}") for k in range(1, n + 1)), [])
    mates += [revolute(f"l{k - 1}" if k > 1 else "g", f"l{k}")[0] for k in range(1, n + 1, 4) if k != at]
    base = f"l{at - 1}" if at > 1 else "g"
    mates.append({"type": "distance", "distance": 30.0, "a": pl(base, (0, 0, 50), (0, 0, 1)),
                  "b": pl(f"l{at}", (0, 0, -50), (0, 0, -1))})
    return mates, [2 * (at - 1) + 1, len(mates) - 1]


def _near_chain(n_free: int, mates: list[dict], rng: np.random.Generator):
    """The chain as a CAD user leaves it before solving: every link near its place (link k of
    the assembled chain sits at (80k, 0, 100k) mm), turned by up to ~10° and off by ~10 mm."""
    parts = [part("g", BOX, np.eye(4), fixed=True)]
    for k in range(1, n_free + 1):
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.1, size=3)).as_matrix()
        pose[:3, 3] = np.array([0.08 * k, 0.0, 0.1 * k]) + rng.normal(scale=0.01, size=3)
        parts.append(part(f"l{k}", BOX, pose))
    return assembly(parts, mates)


@pytest.mark.parametrize(("n", "at"), [(3, 2), (20, 11), (40, 27)])
def test_the_conflicting_pair_of_a_long_chain_with_redundant_mates_is_found(n, at) -> None:
    mates, expected = _conflicting_chain(n, at)
    result = MateSystem(_near_chain(n, mates, np.random.default_rng(n))).solve(max_starts=10, seed=1)
    assert not result.converged
    assert result.conflicting == expected
    # the duplicate concentric mates repeat their joints; the distance mate's rows repeat its
    # coincident mate's (the same faces, parallel, a distance along the same normal)
    duplicates = list(range(2 * n, 2 * n + len(range(1, n + 1, 4))))
    assert [r.index for r in result.fully_redundant] == [*duplicates, len(mates) - 1]


def test_a_conflict_with_the_world_is_found_among_satisfiable_mates() -> None:
    """l1 is fixed to the world where it starts (a random pose), and a distance mate asks for
    its bottom face 30 mm above the ground's top face, which that pose does not give: the
    conflict is exactly those two, not the joints of l2 and l3 hanging from l1."""
    mates = [{"type": "fixed", "a": {"part": "l1", "kind": "point"}},
             {"type": "distance", "distance": 30.0, "a": pl("g", (0, 0, 50), (0, 0, 1)),
              "b": pl("l1", (0, 0, -50), (0, 0, -1))},
             *revolute("l1", "l2"), *revolute("l2", "l3")]
    result = MateSystem(_build(3, mates, np.random.default_rng(11))).solve(max_starts=10, seed=1)
    assert result.conflicting == [0, 1]
