"""Convex fast path for interference volumes: agrees with the exact boolean, handles contacts.

Every case is checked twice, with the convex polytope path (the default) and
with ``convex=False`` (a manifold3d boolean for every pair), and the answers
must agree: volumes within 1e-6 relative, centroids within 1e-9 m.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from physics_helpers import mesh_of, part
from scipy.spatial.transform import Rotation

from cloud.physics.convex import convex_shape, intersect
from cloud.physics.interference import CollisionWorld

TOL = 1e-5  # m


def _pose(rot: np.ndarray, centre: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = centre
    return pose


def _random_convex(rng: np.random.Generator) -> trimesh.Trimesh:
    kind = rng.integers(4)
    if kind == 0:
        return trimesh.creation.box(rng.uniform(20, 120, 3))
    if kind == 1:
        return trimesh.creation.cylinder(radius=rng.uniform(10, 60), height=rng.uniform(20, 120),
                                         sections=int(rng.integers(8, 200)))
    if kind == 2:
        return trimesh.creation.icosphere(int(rng.integers(1, 4)), radius=rng.uniform(10, 60))
    points = rng.normal(size=(int(rng.integers(8, 300)), 3)) * rng.uniform(10, 60, 3)
    return trimesh.convex.convex_hull(points)


def _both(parts: list) -> tuple[list, list]:
    return CollisionWorld(parts).check(TOL), CollisionWorld(parts, convex=False).check(TOL)


def _assert_same(fast: list, exact: list) -> None:
    assert [r.status for r in fast] == [r.status for r in exact]
    for f, e in zip(fast, exact, strict=True):
        if e.depth_m is None or e.depth_m < 1e-12:  # no volume, or a flat contact's rounding
            assert not f.volume_m3 or f.depth_m < 1e-12
        else:
            assert f.volume_m3 == pytest.approx(e.volume_m3, rel=1e-6)
            np.testing.assert_allclose(f.centroid_m, e.centroid_m, atol=1e-9)
            np.testing.assert_allclose(f.region_min_m, e.region_min_m, atol=1e-9)
            np.testing.assert_allclose(f.region_max_m, e.region_max_m, atol=1e-9)
            assert f.depth_m == pytest.approx(e.depth_m, rel=1e-6)


@pytest.mark.parametrize("seed", range(40))
def test_random_convex_pairs_agree_with_the_boolean(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _random_convex(rng), _random_convex(rng)
    assert convex_shape(mesh_of(a).vertices, mesh_of(a).faces) is not None
    centre = rng.uniform(-9.0, 9.0, 3)
    reach = 0.2 * min(a.extents.min(), b.extents.min()) * 1e-3  # centres well inside both
    offset = rng.normal(size=3)
    offset *= rng.uniform(0.1, 1.0) * reach / np.linalg.norm(offset)
    parts = [part("a", mesh_of(a), _pose(Rotation.random(random_state=rng).as_matrix(), centre)),
             part("b", mesh_of(b), _pose(Rotation.random(random_state=rng).as_matrix(),
                                         centre + offset))]
    fast, exact = _both(parts)
    assert fast and fast[0].status == "interfering"
    _assert_same(fast, exact)


def test_flush_faces_have_no_interference_volume() -> None:
    rot = Rotation.from_rotvec([0.4, -0.3, 0.2]).as_matrix()
    m = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0)))
    c = np.array([4.0, -3.0, 2.0])
    parts = [part("a", m, _pose(rot, c)), part("b", m, _pose(rot, c + rot @ [0.1, 0.03, -0.02]))]
    fast, exact = _both(parts)
    assert [r.status for r in fast] == ["touching"]
    assert not fast[0].volume_m3
    _assert_same(fast, exact)


@pytest.mark.parametrize("depth", [0.3 * TOL, 3 * TOL, 10 * TOL, -2 * TOL])
def test_corner_near_a_face_is_classified_by_depth(depth: float) -> None:
    """A cube corner pushed ``depth`` into a face: the shared tetrahedron's mean thickness is
    2V/S = 2·depth / (3(1 + √3)); touching up to the tolerance, interfering above."""
    box = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0)))
    turn = Rotation.from_euler("zy", [45.0, np.degrees(np.arctan(1 / np.sqrt(2)))], degrees=True)
    rot_b = turn.as_matrix()
    corners = [rot_b @ ((np.array(s) * 2 - 1) * 0.05) for s in np.ndindex(2, 2, 2)]
    low = min(corners, key=lambda p: p[2])  # B's lowest corner, relative to its centre
    centre_b = np.array([0.01, -0.02, 0.05 - depth - low[2]])
    parts = [part("a", box, np.eye(4)), part("b", box, _pose(rot_b, centre_b))]
    fast, exact = _both(parts)
    thickness = 2 * depth / (3 * (1 + np.sqrt(3)))
    expected = "clear" if depth < 0 else ("touching" if thickness <= TOL else "interfering")
    assert (fast[0].status if fast else "clear") == expected
    _assert_same(fast, exact)


def test_coplanar_faces_on_the_same_side_are_counted_once() -> None:
    """Two boxes sharing their top face plane: the shared face must not be counted twice."""
    a = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0)))
    b = mesh_of(trimesh.creation.box((60.0, 60.0, 40.0)))
    rot = Rotation.from_rotvec([0.2, 0.5, -0.1]).as_matrix()
    c = np.array([-5.0, 2.0, 7.0])
    parts = [part("a", a, _pose(rot, c)), part("b", b, _pose(rot, c + rot @ [0.04, 0.0, 0.03]))]
    fast, exact = _both(parts)
    assert fast[0].volume_m3 == pytest.approx(0.04 * 0.06 * 0.04, rel=1e-9)
    _assert_same(fast, exact)


def _tube() -> trimesh.Trimesh:
    return trimesh.creation.annulus(r_min=30.0, r_max=50.0, height=100.0, sections=64)


def test_a_tube_is_not_convex_and_uses_the_boolean_with_the_same_answers() -> None:
    tube = _tube()
    assert convex_shape(mesh_of(tube).vertices, mesh_of(tube).faces) is None
    pin = trimesh.creation.cylinder(radius=10.0, height=200.0, sections=32)
    rot = Rotation.from_rotvec([0.0, np.pi / 2, 0.0]).as_matrix()  # across the tube's wall
    parts = [part("tube", mesh_of(tube), np.eye(4)), part("pin", mesh_of(pin), _pose(rot, np.zeros(3)))]
    fast, exact = _both(parts)
    assert [r.status for r in fast] == ["interfering"]
    _assert_same(fast, exact)
    # the pin crosses the wall twice: about 2 × 20 mm of its 10 mm-radius section
    assert fast[0].volume_m3 == pytest.approx(2 * 0.02 * np.pi * 0.01 ** 2, rel=0.05)


def test_an_open_mesh_is_not_convex() -> None:
    box = trimesh.creation.box((10.0, 10.0, 10.0))
    assert convex_shape(box.vertices, box.faces[:-1]) is None


def test_picture_mesh_of_a_convex_intersection_encloses_its_volume() -> None:
    a = mesh_of(trimesh.creation.icosphere(3, radius=50.0))
    parts = [part("a", a, np.eye(4)), part("b", a, _pose(np.eye(3), np.array([0.07, 0.0, 0.0])))]
    found = CollisionWorld(parts).check(TOL)
    verts, faces = found[0].intersection
    assert len(faces) and np.all(np.abs(verts[:, 0] - 0.035) <= 0.015 + 1e-12)
    tri = verts[faces]
    # the fan triangles cover the surface: their areas add up to the solid's surface
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    assert area == pytest.approx(2 * found[0].volume_m3 / found[0].depth_m, rel=1e-9)


def test_coplanar_faces_in_a_batch_of_pairs_are_merged_per_pair() -> None:
    """Several pairs in one check (one batch), each with faces on a common plane, one pair
    turned so its normals match the others' only in part: every volume matches the boolean."""
    a = mesh_of(trimesh.creation.box((100.0, 100.0, 100.0)))
    b = mesh_of(trimesh.creation.box((60.0, 60.0, 40.0)))
    rots = [Rotation.from_rotvec(v).as_matrix() for v in ([0.2, 0.5, -0.1], [0.2, 0.5, -0.1],
                                                           [0.0, 0.0, 0.3])]
    parts = []
    for k, rot in enumerate(rots):
        c = np.array([-5.0 + 2.0 * k, 2.0, 7.0])
        parts += [part(f"a{k}", a, _pose(rot, c)),
                  part(f"b{k}", b, _pose(rot, c + rot @ [0.04, -0.01 * k, 0.03]))]
    fast, exact = _both(parts)
    assert [r.status for r in fast] == ["interfering"] * 3
    for r in fast:
        assert r.volume_m3 == pytest.approx(0.04 * 0.06 * 0.04, rel=1e-9)
    _assert_same(fast, exact)


@pytest.mark.parametrize("seed", range(20))
def test_convex_intersection_closes_without_the_boolean(seed: int) -> None:
    """The construction itself resolves generic overlaps (the boolean is only a fallback for
    degenerate ones): every face closes, and the volume is the boolean's to 1e-12."""
    rng = np.random.default_rng(100 + seed)
    meshes = [mesh_of(_random_convex(rng)) for _ in range(2)]
    a, b = (convex_shape(m.vertices, m.faces) for m in meshes)
    assert a is not None and b is not None
    reach = 0.5 * min(np.ptp(m.vertices, axis=0).min() for m in meshes)
    poses = [_pose(Rotation.random(random_state=rng).as_matrix(), c)
             for c in (np.zeros(3), rng.normal(size=3) * reach / 3)]
    solid = intersect(a, b, np.linalg.inv(poses[0]) @ poses[1])
    assert solid is not None
    exact = CollisionWorld([part("a", meshes[0], poses[0]), part("b", meshes[1], poses[1])],
                           convex=False).check(TOL)
    assert exact and solid.volume == pytest.approx(exact[0].volume_m3, rel=1e-12)
