"""Interference suite: generated pairs with known answers anywhere in a 20 m cell, any orientation.

Separated and touching cases put a vertex of a rotated box at a known signed
gap from a face of another box (the vertex is then the closest point, so the
distance is exactly the gap). Interfering cases use boxes sharing an
orientation (overlap volume = product of the axis overlaps), coaxial copies
of one cylinder mesh (overlap = mesh volume × overlap fraction) and parts
wholly inside others.
"""

from __future__ import annotations

import manifold3d
import numpy as np
import pytest
import trimesh
from physics_helpers import mesh_of, part
from scipy.spatial.transform import Rotation

from cloud.physics.interference import CollisionWorld
from cloud.physics.mesh import PartMesh, build_part_mesh

TOL = 1e-5  # touching tolerance, m
CELL = 20.0  # m
N_SEPARATED, N_TOUCHING, N_BOX_OVERLAP, N_CYL_OVERLAP, N_INSIDE = 40, 25, 20, 10, 5


def _pose(rot: np.ndarray, centre: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = centre
    return pose


def _vertex_at_gap(rng: np.random.Generator, gap: float):
    """Box A anywhere; rotated box B whose lowest vertex (along A's +x face normal) is `gap` away."""
    da, db = rng.uniform(50, 300, 3), rng.uniform(30, 200, 3)  # mm
    ra, rb = Rotation.random(random_state=rng).as_matrix(), Rotation.random(random_state=rng).as_matrix()
    ca = rng.uniform(-CELL / 2 + 0.5, CELL / 2 - 0.5, 3)
    a, b = mesh_of(trimesh.creation.box(da)), mesh_of(trimesh.creation.box(db))
    normal = ra[:, 0]
    corners_b = b.vertices @ rb.T  # B's vertices, rotated, about its centre
    low = corners_b[np.argmin(corners_b @ normal)]
    lateral = ra[:, 1] * rng.uniform(-0.25, 0.25) * da[1] * 1e-3 + ra[:, 2] * rng.uniform(
        -0.25, 0.25) * da[2] * 1e-3
    target = ca + normal * (da[0] * 1e-3 / 2 + gap) + lateral  # where B's low vertex goes
    cb = target - low
    return [part("a", a, _pose(ra, ca)), part("b", b, _pose(rb, cb))]


def _cases():
    rng = np.random.default_rng(20240601)
    cases = []
    for k in range(N_SEPARATED):
        gap = float(10 ** rng.uniform(np.log10(3 * TOL), np.log10(0.05)))
        cases.append(("clear", f"sep{k}", _vertex_at_gap(rng, gap), gap, None))
    for k in range(N_TOUCHING):
        if k % 5 == 0:  # flush faces, same orientation
            rot = Rotation.random(random_state=rng).as_matrix()
            c = rng.uniform(-9.5, 9.5, 3)
            m = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0)))
            off = rot @ np.array([0.1, rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)])
            cases.append(("touching", f"flush{k}", [part("a", m, _pose(rot, c)),
                                                    part("b", m, _pose(rot, c + off))], 0.0, None))
        else:
            gap = float(rng.uniform(-0.45, 0.45) * TOL)
            cases.append(("touching", f"touch{k}", _vertex_at_gap(rng, gap), max(gap, 0.0), None))
    for k in range(N_BOX_OVERLAP):
        rot = Rotation.random(random_state=rng).as_matrix()
        c = rng.uniform(-9.5, 9.5, 3)
        da, db = rng.uniform(50, 300, 3), rng.uniform(50, 300, 3)
        shift = (rng.uniform(0.1, 0.9, 3) * (da + db) / 2 * rng.choice([-1, 1], 3)) * 1e-3
        lo = np.maximum(-da / 2 * 1e-3, shift - db / 2 * 1e-3)
        hi = np.minimum(da / 2 * 1e-3, shift + db / 2 * 1e-3)
        volume = float(np.prod(hi - lo))
        parts = [part("a", mesh_of(trimesh.creation.box(da)), _pose(rot, c)),
                 part("b", mesh_of(trimesh.creation.box(db)), _pose(rot, c + rot @ shift))]
        cases.append(("interfering", f"boxes{k}", parts, 0.0, volume))
    for k in range(N_CYL_OVERLAP):
        tm = trimesh.creation.cylinder(radius=rng.uniform(10, 80), height=100.0, sections=64)
        m = mesh_of(tm)
        rot = Rotation.random(random_state=rng).as_matrix()
        c = rng.uniform(-9.5, 9.5, 3)
        s = rng.uniform(0.05, 0.9) * 0.1
        volume = tm.volume * 1e-9 * (1 - s / 0.1)
        cases.append(("interfering", f"cyl{k}", [part("a", m, _pose(rot, c)),
                                                 part("b", m, _pose(rot, c + rot[:, 2] * s))], 0.0, volume))
    for k in range(N_INSIDE):
        outer = trimesh.creation.icosphere(3, radius=200.0)
        inner = trimesh.creation.box(rng.uniform(10, 50, 3))
        c = rng.uniform(-9.5, 9.5, 3)
        rot = Rotation.random(random_state=rng).as_matrix()
        cases.append(("interfering", f"inside{k}", [
            part("outer", mesh_of(outer), _pose(np.eye(3), c)),
            part("inner", mesh_of(inner), _pose(rot, c + rng.uniform(-0.05, 0.05, 3)))],
            0.0, inner.volume * 1e-9))
    return cases


CASES = _cases()


def test_the_suite_has_at_least_100_cases() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize(("expected", "name", "parts", "gap", "volume"), CASES,
                         ids=[c[1] for c in CASES])
def test_pair_is_classified_with_exact_distance_and_volume(expected, name, parts, gap, volume) -> None:
    world = CollisionWorld(parts)
    found = world.check(TOL)
    status = found[0].status if found else "clear"
    assert status == expected
    if expected == "interfering":
        assert found[0].volume_m3 == pytest.approx(volume, rel=0.01)
        assert found[0].centroid_m is not None
        return
    clear = world.clearances(0.1)
    assert len(clear) == 1
    assert abs(clear[0].distance_m - gap) <= 1e-6  # clearances within 1 µm
    # the closest points are a real witness pair: their distance is the clearance
    if clear[0].point_a_m is not None:  # flush faces have no single witness point
        witness = np.linalg.norm(clear[0].point_a_m - clear[0].point_b_m)
        assert witness == pytest.approx(clear[0].distance_m, abs=1e-9)


def test_many_parts_min_clearance_and_threshold_report() -> None:
    m = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0)))
    gaps = [0.001 * ((k + 1) % 3) + 0.0004 for k in range(9)]  # between p_k and p_k+1
    xs = np.concatenate([[0.0], np.cumsum(np.array(gaps) + 0.1)])
    parts = [part(f"p{k}", m, _pose(np.eye(3), np.array([x, 0, 0]))) for k, x in enumerate(xs)]
    world = CollisionWorld(parts)
    best = world.min_clearance()
    assert best.distance_m == pytest.approx(min(gaps), abs=1e-9)
    under = world.clearances(0.0015)
    assert sorted(round(r.distance_m, 9) for r in under) == sorted(
        round(g, 9) for g in gaps if g <= 0.0015)
    moved = world.poses.copy()
    moved[3, :3, 3] += [0, 0, 5.0]  # lift one part away; structures are reused
    world.set_poses(moved)
    assert all("p3" not in (r.a, r.b) for r in world.clearances(0.0015))


def test_open_part_crossing_reports_unknown_volume() -> None:
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    open_mesh = build_part_mesh(box.vertices, box.faces[:-1])
    parts = [part("open", open_mesh, _pose(np.eye(3), np.zeros(3))),
             part("solid", mesh_of(box), _pose(np.eye(3), np.array([0.05, 0.0, 0.0])))]
    found = CollisionWorld(parts).check(TOL)
    assert found[0].status == "interfering"
    assert found[0].volume_m3 is None
    assert "not closed" in found[0].note


def test_check_follows_moves_and_rigid_motion_of_the_whole_assembly() -> None:
    """Cached structures and intersection solids never hide a move; a rigid move keeps the volume."""
    da, db, shift = np.array([100.0, 80.0, 60.0]), np.array([50.0, 70.0, 90.0]), np.array([0.06, 0.01, 0.0])
    lo = np.maximum(-da / 2e3, shift - db / 2e3)
    hi = np.minimum(da / 2e3, shift + db / 2e3)
    volume = float(np.prod(hi - lo))
    a, b = mesh_of(trimesh.creation.box(da)), mesh_of(trimesh.creation.box(db))
    rot = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    c = np.array([3.0, -2.0, 1.0])
    world = CollisionWorld([part("a", a, _pose(rot, c)), part("b", b, _pose(rot, c + rot @ shift))])
    first = world.check(TOL)
    assert [r.status for r in first] == ["interfering"]
    assert first[0].volume_m3 == pytest.approx(volume, rel=1e-9)
    start = world.poses.copy()
    away = start.copy()
    away[1, :3, 3] += rot @ np.array([0.2, 0.0, 0.0])
    world.set_poses(away)
    assert world.check(TOL) == []
    world.set_poses(start)
    again = world.check(TOL)
    assert again[0].volume_m3 == pytest.approx(volume, rel=1e-9)
    np.testing.assert_allclose(again[0].centroid_m, first[0].centroid_m, atol=1e-12)
    # the whole assembly turned and carried 5 m away: same volume, centroid carried along
    move = _pose(Rotation.from_rotvec([0.0, 0.7, 0.1]).as_matrix(), np.array([5.0, 1.0, -4.0]))
    world.set_poses(np.stack([move @ p for p in start]))
    moved = world.check(TOL)
    assert moved[0].volume_m3 == pytest.approx(volume, rel=1e-9)
    expected = move[:3, :3] @ first[0].centroid_m + move[:3, 3]
    np.testing.assert_allclose(moved[0].centroid_m, expected, atol=1e-9)
    # the same answer without any cache
    fresh = CollisionWorld([part("a", a, _pose(rot, c)), part("b", b, _pose(rot, c + rot @ shift))],
                           cache_results=False).check(TOL)
    assert fresh[0].volume_m3 == pytest.approx(volume, rel=1e-9)


def test_broad_phase_after_a_few_parts_moved_equals_a_fresh_world() -> None:
    """After a move only the moved parts' pairs are recomputed; the bounds must equal a rebuild."""
    rng = np.random.default_rng(3)
    m = mesh_of(trimesh.creation.box((100.0, 60.0, 40.0)))
    start = [_pose(Rotation.random(random_state=rng).as_matrix(), rng.uniform(-1.0, 1.0, 3))
             for _ in range(40)]
    world = CollisionWorld([part(f"p{k}", m, p) for k, p in enumerate(start)])
    world.aabb_gaps()
    poses = world.poses.copy()
    for step in range(3):
        for k in rng.choice(40, size=3, replace=False):  # 3 of 40: the incremental update
            poses[k, :3, 3] += rng.uniform(-0.3, 0.3, 3)
        world.set_poses(poses)
        fresh = CollisionWorld([part(f"p{k}", m, p) for k, p in enumerate(poses)])
        i, j, lb = world.aabb_gaps()
        fi, fj, flb = fresh.aabb_gaps()
        assert np.array_equal(i, fi) and np.array_equal(j, fj)
        np.testing.assert_array_equal(lb, flb)
        assert world.candidate_pairs(0.01) == fresh.candidate_pairs(0.01), step


def _open_box() -> PartMesh:
    """A 100 mm box centred on the origin without its -x face: open, its +x face at x = 50 mm."""
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    return build_part_mesh(box.vertices, box.faces[box.face_normals[:, 0] > -0.5])


def _closed_l_block() -> PartMesh:
    """A closed, non-convex block: a 100 mm cube (x 0..100 mm) with a 50 × 50 mm notch cut along z at x ≥ 50."""
    cube = manifold3d.Manifold.cube([100.0, 100.0, 100.0])
    notch = manifold3d.Manifold.cube([60.0, 60.0, 120.0]).translate([50.0, 50.0, -10.0])
    mesh = (cube - notch).translate([0.0, -50.0, -50.0]).to_mesh()
    return build_part_mesh(np.asarray(mesh.vert_properties)[:, :3], np.asarray(mesh.tri_verts))


@pytest.mark.parametrize("closed", ["box", "notched"])
@pytest.mark.parametrize(("shift_um", "state"), [(0.0, "touching"), (1.0, "touching"), (-5.0, "touching"),
                                                  (-1000.0, "interfering")])
def test_an_open_part_flush_against_a_closed_one_touches(closed: str, shift_um: float, state: str) -> None:
    """The open box's +x face (x = 50 mm) against the closed part's -x face, moved ``shift_um`` away (negative:
    into the open box); the side faces line up. Interfering only when the open surface lies deeper than the
    tolerance inside the closed part: the +x face's depth is the shift (closed form)."""
    if closed == "box":
        solid, at = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0))), 0.1  # its -x face at x = 50 mm
    else:
        solid, at = _closed_l_block(), 0.05
    parts = [part("open", _open_box(), _pose(np.eye(3), np.zeros(3))),
             part("solid", solid, _pose(np.eye(3), np.array([at + shift_um * 1e-6, 0.0, 0.0])))]
    [found] = CollisionWorld(parts).check(TOL)
    assert (found.a, found.b, found.status) == ("open", "solid", state)
    if state == "interfering":
        assert found.depth_m == pytest.approx(-shift_um * 1e-6, rel=1e-9)
        assert "not closed" in found.note and "reaches 1 mm into solid" in found.note
    else:
        assert found.distance_m == pytest.approx(max(shift_um, 0.0) * 1e-6, abs=1e-12)
        assert found.volume_m3 is None and len(found.points_a_m)


def test_an_open_lid_pierced_by_a_pin_between_its_corners_interferes() -> None:
    """A 200 × 200 × 20 mm open box (no bottom) whose 200 mm top (two triangles) a 4 mm pin pierces far from
    every corner and edge: no corner or grid point of the top lies in the pin, the middle of the pin's
    section does (depth 2 mm, the pin's half width: closed form)."""
    tray = trimesh.creation.box((200.0, 200.0, 20.0))
    lid = build_part_mesh(tray.vertices, tray.faces[tray.face_normals[:, 2] > -0.5])
    pin = mesh_of(trimesh.creation.box((4.0, 4.0, 40.0)))
    parts = [part("lid", lid, _pose(np.eye(3), np.zeros(3))),
             part("pin", pin, _pose(np.eye(3), np.array([0.031, 0.047, 0.01])))]
    [found] = CollisionWorld(parts).check(TOL)
    assert found.status == "interfering" and found.depth_m == pytest.approx(0.002, rel=1e-9)
