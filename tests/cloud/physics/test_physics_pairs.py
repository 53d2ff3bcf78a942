"""One answer per pair, checked against OCCT: states, distances, overlap volumes, contact points on surfaces.

Every reference comes from the OCCT kernel on the exact B-rep solids
(BRepExtrema_DistShapeShape for distances and points on surfaces,
BRepAlgoAPI_Common for shared volumes) or from a closed form; the parts we
check are OCCT's own tessellations of those solids (chord tolerance far below
the touching tolerance), in mm, placed at the identity pose.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from occt import tessellate
from OCP.BRep import BRep_Builder
from OCP.BRepAlgoAPI import BRepAlgoAPI_Common, BRepAlgoAPI_Cut
from OCP.BRepBuilderAPI import (
    BRepBuilderAPI_MakeFace,
    BRepBuilderAPI_MakePolygon,
    BRepBuilderAPI_MakeVertex,
    BRepBuilderAPI_Transform,
)
from OCP.BRepExtrema import BRepExtrema_DistShapeShape
from OCP.BRepGProp import BRepGProp
from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox, BRepPrimAPI_MakeCylinder, BRepPrimAPI_MakeSphere
from OCP.gp import gp_Ax1, gp_Ax2, gp_Dir, gp_Pnt, gp_Trsf, gp_Vec
from OCP.GProp import GProp_GProps
from OCP.TopAbs import TopAbs_FACE
from OCP.TopExp import TopExp_Explorer
from OCP.TopoDS import TopoDS_Compound
from physics_helpers import assembly, grid_plate, part

from cloud.physics import report
from cloud.physics.interference import CollisionWorld
from cloud.physics.mesh import build_part_mesh

TOL = 1e-5  # m, the default touching tolerance
DEFLECTION = 1e-3  # mm: tessellation chord tolerance, 1 µm
MM = 1e-3


# --- OCCT references (shapes in mm) ---------------------------------------------------------
def box(x0, y0, z0, dx, dy, dz):
    return BRepPrimAPI_MakeBox(gp_Pnt(x0, y0, z0), dx, dy, dz).Shape()


def cylinder(x, y, z, r, h):
    return BRepPrimAPI_MakeCylinder(gp_Ax2(gp_Pnt(x, y, z), gp_Dir(0, 0, 1)), r, h).Shape()


def sphere(x, y, z, r):
    return BRepPrimAPI_MakeSphere(gp_Pnt(x, y, z), r).Shape()


def tube(r_in, r_out, h):
    return BRepAlgoAPI_Cut(cylinder(0, 0, 0, r_out, h), cylinder(0, 0, -1, r_in, h + 2)).Shape()


def turned(shape, axis, angle_deg, shift=(0.0, 0.0, 0.0)):
    trsf = gp_Trsf()
    trsf.SetRotation(gp_Ax1(gp_Pnt(0, 0, 0), gp_Dir(*axis)), math.radians(angle_deg))
    move = gp_Trsf()
    move.SetTranslation(gp_Vec(*shift))
    return BRepBuilderAPI_Transform(BRepBuilderAPI_Transform(shape, trsf, True).Shape(), move, True).Shape()


def surface(shape):
    """The faces of a solid as a compound: distances to it are distances to the surface, not the solid."""
    builder, comp = BRep_Builder(), TopoDS_Compound()
    builder.MakeCompound(comp)
    exp = TopExp_Explorer(shape, TopAbs_FACE)
    while exp.More():
        builder.Add(comp, exp.Current())
        exp.Next()
    return comp


def occt_distance(s1, s2) -> tuple[float, list[np.ndarray]]:
    """Minimum distance between the two surfaces (m) and OCCT's solution points on the first (m)."""
    ext = BRepExtrema_DistShapeShape(surface(s1), surface(s2))
    assert ext.IsDone()
    pts = [np.array([p.X(), p.Y(), p.Z()]) * MM for p in (ext.PointOnShape1(k) for k in range(1, ext.NbSolution() + 1))]
    return ext.Value() * MM, pts


def to_surface(points_m: np.ndarray, shape) -> np.ndarray:
    """Distance (m) of each point to the shape's surface."""
    surf = surface(shape)
    out = []
    for p in np.asarray(points_m) / MM:
        ext = BRepExtrema_DistShapeShape(BRepBuilderAPI_MakeVertex(gp_Pnt(*p)).Vertex(), surf)
        out.append(ext.Value() * MM)
    return np.array(out)


def triangles_to_surface(triangles_m: np.ndarray, shape) -> np.ndarray:
    """Distance (m) of each triangle (as an OCCT face) to the shape's surface."""
    surf = surface(shape)
    out = []
    for tri in np.asarray(triangles_m) / MM:
        poly = BRepBuilderAPI_MakePolygon(*(gp_Pnt(*p) for p in tri), True)
        face = BRepBuilderAPI_MakeFace(poly.Wire()).Face()
        out.append(BRepExtrema_DistShapeShape(face, surf).Value() * MM)
    return np.array(out)


def common_volume(s1, s2) -> float:
    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(BRepAlgoAPI_Common(s1, s2).Shape(), props)
    return props.Mass() * MM**3


def occt_part(name, shape, material="steel-s235", deflection=DEFLECTION):
    verts, faces = tessellate(shape, deflection)
    return part(name, build_part_mesh(verts, faces, "mm"), np.eye(4), material)


def world(*named, deflection=DEFLECTION):
    return CollisionWorld([occt_part(n, s, deflection=deflection) for n, s in named])


def only(results):
    assert len(results) == 1, results
    return results[0]


# --- touching: coincident faces, edge and corner contacts ------------------------------------
A = box(0, 0, 0, 20, 20, 20)
TOUCHING = {
    # B's -x face on A's +x face: the shared face is x = 20, 5 <= y <= 20, 3 <= z <= 13
    "coincident faces": (box(20, 5, 3, 20, 20, 10), ((20, 5, 3), (20, 20, 13))),
    # B's edge along z on A's +x face: the line x = 20, y = 10, 0 <= z <= 20
    "edge on face": (turned(box(0, 0, 0, 10, 10, 20), (0, 0, 1), -45, (20, 10, 0)), ((20, 10, 0), (20, 10, 20))),
}


def _corner_case():
    """A box tipped onto its corner, its lowest vertex placed on A's top face at (8, 9, 20)."""
    tipped = turned(box(0, 0, 0, 10, 10, 10), (1, -1, 0), math.degrees(math.atan(math.sqrt(2))))
    verts, _ = tessellate(tipped, DEFLECTION)
    low = verts[np.argmin(verts[:, 2])]
    return turned(tipped, (0, 0, 1), 0.0, (8 - low[0], 9 - low[1], 20 - low[2]))


TOUCHING["corner on face"] = (_corner_case(), ((8, 9, 20), (8, 9, 20)))


@pytest.mark.parametrize("case", list(TOUCHING))
def test_touching_pair_gives_the_contact_region_with_points_on_both_surfaces(case) -> None:
    b, (lo, hi) = TOUCHING[case]
    reference, _ = occt_distance(A, b)
    assert reference < 1e-9  # OCCT: the surfaces meet
    w = world(("a", A), ("b", b))
    r = only(w.check(TOL))
    assert r.status == "touching"
    assert r.distance_m <= 1e-9
    # the contact box is the shared face / edge / corner (closed form)
    np.testing.assert_allclose(r.region_min_m, np.array(lo) * MM, atol=TOL)
    np.testing.assert_allclose(r.region_max_m, np.array(hi) * MM, atol=TOL)
    # every point lies on its own surface and on the other's, within the tolerance (OCCT)
    assert 0 < len(r.points_a_m) <= 64 and 0 < len(r.points_b_m) <= 64
    for pts in (r.points_a_m, r.points_b_m):
        assert to_surface(pts, A).max() <= TOL
        assert to_surface(pts, b).max() <= TOL
    assert to_surface([r.point_a_m, r.point_b_m], A).max() <= TOL
    # the triangles in contact are within the tolerance of the other part
    mesh_a, mesh_b = w.parts[0].mesh, w.parts[1].mesh
    assert len(r.faces_a) and len(r.faces_b)
    assert triangles_to_surface(mesh_a.triangles[r.faces_a], b).max() <= TOL
    assert triangles_to_surface(mesh_b.triangles[r.faces_b], A).max() <= TOL
    # the clearance report says the same
    rows = w.clearances(0.005)
    assert [(x.a, x.b, x.status) for x in rows] == [("a", "b", "touching")]
    assert w.min_clearance().status == "touching"


def test_coincident_faces_name_every_triangle_of_the_shared_face() -> None:
    b, _ = TOUCHING["coincident faces"]
    w = world(("a", A), ("b", b))
    r = only(w.check(TOL))
    on_face = np.flatnonzero(np.all(np.abs(w.parts[0].mesh.triangles[:, :, 0] - 20 * MM) < 1e-12, axis=1))
    assert set(on_face) <= set(r.faces_a.tolist())


def test_flush_finely_meshed_faces_give_the_shared_face_as_contact_box() -> None:
    """Two 100 × 100 mm plates whose faces are 100 × 100 grids (20,000 triangles each) lie face to face.

    B is turned over (its grid face down on z = 0) and shifted by (30.25, 20.25) mm off A's square,
    so its grid lines fall between A's: the shared face is x 30.25..100, y 20.25..100, z = 0.
    """
    n = 100
    flip = np.eye(4)
    flip[:3, :3] = np.diag([1.0, -1.0, -1.0])  # (x, y, z) -> (x, -y, -z): the grid face looks down
    flip[:3, 3] = [30.25 * MM, 120.25 * MM, 0.0]
    w = CollisionWorld([part("a", grid_plate(n, 100.0, 10.0), np.eye(4)),
                        part("b", grid_plate(n, 100.0, 10.0), flip)])
    r = only(w.check(TOL))
    assert (r.status, r.distance_m) == ("touching", 0.0)
    np.testing.assert_allclose(r.region_min_m, np.array([30.25, 20.25, 0.0]) * MM, atol=1e-12)
    np.testing.assert_allclose(r.region_max_m, np.array([100.0, 100.0, 0.0]) * MM, atol=1e-12)
    for pts in (r.points_a_m, r.points_b_m):
        assert 0 < len(pts) <= 64
        assert np.abs(pts[:, 2]).max() <= 1e-12
        assert np.all((pts[:, :2] >= np.array([30.25, 20.25]) * MM - 1e-12) & (pts[:, :2] <= 100 * MM + 1e-12))
    # every grid triangle of A with area in the shared face is in contact; each listed one meets it
    tri = w.parts[0].mesh.triangles
    flat = np.all(np.abs(tri[:, :, 2]) < 1e-12, axis=1)
    inside = flat & np.all(tri[:, :, 0] > 30.25 * MM, axis=1) & np.all(tri[:, :, 1] > 20.25 * MM, axis=1)
    assert inside.sum() > 0.8 * 2 * n * n * (69.75 * 79.75) / 100**2
    assert set(np.flatnonzero(inside)) <= set(r.faces_a.tolist())
    listed = tri[r.faces_a]
    assert np.all(listed[:, :, 0].max(axis=1) >= 30.25 * MM - TOL)
    assert np.all(listed[:, :, 1].max(axis=1) >= 20.25 * MM - TOL)
    assert np.all(listed[:, :, 2].max(axis=1) >= -TOL)
    rows = w.clearances(0.005)
    assert [(x.a, x.b, x.status) for x in rows] == [("a", "b", "touching")]


# --- clear and nearly touching pairs at known gaps -------------------------------------------
@pytest.mark.parametrize("gap_m", [1e-3, 2e-5, 1e-6, 1.9e-14])
def test_gap_is_measured_and_classified_against_the_tolerance(gap_m) -> None:
    b = box(20 + gap_m / MM, 5, 3, 20, 20, 10)
    reference, ref_points = occt_distance(A, b)
    w = world(("a", A), ("b", b))
    for tol in (TOL, 1e-7):
        expected = "touching" if gap_m <= tol else "clear"
        r = w.min_clearance(tol)
        assert r.status == expected, tol
        assert r.distance_m == pytest.approx(reference, abs=1e-12)
        assert abs(r.distance_m - gap_m) <= 1e-12
        # the closest points lie on the surfaces, their distance is the gap
        assert to_surface([r.point_a_m], A)[0] <= 1e-9
        assert to_surface([r.point_b_m], b)[0] <= 1e-9
        assert np.linalg.norm(r.point_a_m - r.point_b_m) == pytest.approx(reference, abs=1e-12)
        found = w.check(tol)
        assert [x.status for x in found] == ([] if expected == "clear" else ["touching"])
        rows = w.clearances(0.005, tol)
        assert [(x.status, round(x.distance_m, 15)) for x in rows] == [(expected, round(r.distance_m, 15))]
    assert ref_points  # OCCT found the closest points too


# --- parts inside others' material, and parts in holes ---------------------------------------
TUBE = tube(10, 20, 30)
HOLLOW = BRepAlgoAPI_Cut(sphere(0, 0, 0, 14), sphere(0, 0, 0, 8)).Shape()
SPHERES = 5e-3  # mm: chord tolerance for the spheres (a finer one takes OCCT long to mesh)
INSIDE = {  # outer, inner, chord tolerance (mm), relative accuracy of the tessellated volume
    "pin in tube wall": (TUBE, cylinder(15, 0, 10, 2, 10), DEFLECTION, 2e-3),
    "box in box": (box(0, 0, 0, 100, 100, 100), box(40, 30, 20, 10, 20, 30), DEFLECTION, 1e-9),
    "ball in hollow sphere wall": (HOLLOW, sphere(11, 0, 0, 2.5), SPHERES, 1e-2),
}


@pytest.mark.parametrize("case", list(INSIDE))
def test_part_inside_the_material_interferes_in_check_and_clearance(case) -> None:
    outer, inner, deflection, rel = INSIDE[case]
    volume = common_volume(outer, inner)
    w = world(("outer", outer), ("inner", inner), deflection=deflection)
    r = only(w.check(TOL))
    assert r.status == "interfering"
    assert r.volume_m3 == pytest.approx(volume, rel=rel)
    assert r.depth_m is not None and r.depth_m > TOL
    assert "inside" in r.note
    # the clearance report and its minimum say the same, never a positive distance
    rows = w.clearances(0.005)
    assert [(x.status, x.distance_m) for x in rows] == [("interfering", 0.0)]
    worst = w.min_clearance()
    assert (worst.status, worst.distance_m, worst.volume_m3) == ("interfering", 0.0, r.volume_m3)
    # the overlap region is the inner part; all its faces are in the overlap, none of the outer's
    verts = w.parts[1].mesh.vertices
    np.testing.assert_allclose(r.region_min_m, verts.min(axis=0), atol=1e-9)
    np.testing.assert_allclose(r.extent_m, np.ptp(verts, axis=0), atol=1e-9)
    assert len(r.faces_b) == len(w.parts[1].mesh.faces) and len(r.faces_a) == 0
    assert to_surface(r.points_b_m, inner).max() <= TOL
    # the report: the closest points tell how deep inside the inner part lies (OCCT distance)
    depth_inside, _ = occt_distance(outer, inner)
    assert np.linalg.norm(r.point_a_m - r.point_b_m) == pytest.approx(depth_inside, abs=2 * deflection * MM)


@pytest.mark.parametrize(("outer", "inner", "name"), [
    (TUBE, cylinder(0, 0, 10, 2, 10), "pin in the tube's hole"),
    (HOLLOW, sphere(0, 0, 0, 3), "ball in the hollow"),
])
def test_part_in_a_hole_or_cavity_is_clear(outer, inner, name) -> None:
    reference, _ = occt_distance(outer, inner)
    w = world(("outer", outer), ("inner", inner), deflection=SPHERES)
    assert w.check(TOL) == [], name
    r = w.min_clearance()
    assert r.status == "clear"
    assert r.distance_m == pytest.approx(reference, abs=2 * SPHERES * MM)


# --- crossing parts: the overlap region and the faces in it ----------------------------------
def test_crossing_pair_reports_overlap_volume_region_and_faces_on_both_surfaces() -> None:
    a, b = cylinder(0, 0, 0, 10, 20), box(5, -5, 5, 20, 10, 10)
    w = world(("cyl", a), ("box", b))
    r = only(w.check(TOL))
    assert r.status == "interfering"
    assert r.volume_m3 == pytest.approx(common_volume(a, b), rel=1e-3)
    # region: x from 5 to the cylinder wall, y -5..5, z 5..15
    np.testing.assert_allclose(r.region_min_m, np.array([5, -5, 5]) * MM, atol=2e-6)
    np.testing.assert_allclose(r.region_max_m, np.array([10, 5, 15]) * MM, atol=2e-6)
    assert to_surface(r.points_a_m, a).max() <= TOL
    assert to_surface(r.points_b_m, b).max() <= TOL
    inside_box = np.all((r.points_a_m >= r.region_min_m - TOL) & (r.points_a_m <= r.region_max_m + TOL), axis=1)
    assert inside_box.all()
    # the box's -x face (inside the cylinder) is in its overlap faces
    tri = w.parts[1].mesh.triangles
    minus_x = np.flatnonzero(np.all(np.abs(tri[:, :, 0] - 5 * MM) < 1e-12, axis=1))
    assert set(minus_x) <= set(r.faces_b.tolist())
    assert (w.min_clearance().status, w.min_clearance().distance_m) == ("interfering", 0.0)


# --- press fits ------------------------------------------------------------------------------
def test_press_fit_shows_its_depth_and_is_interfering_below_that_tolerance() -> None:
    """A pin 0.005 mm larger in radius than its hole: 5 µm radial interference."""
    hole = tube(5, 10, 20)
    pin = cylinder(0, 0, 5, 5.005, 10)
    volume = common_volume(hole, pin)
    assert volume == pytest.approx(math.pi * (5.005**2 - 5**2) * 10 * MM**3, rel=1e-6)
    parts = [occt_part("hole", hole), occt_part("pin", pin)]
    asm, w = assembly(parts), CollisionWorld(parts)
    coll, _ = report.collision("x", asm, w, TOL)
    p = only(coll.pairs)
    assert (p.status, coll.tolerance_m) == ("touching", TOL)  # 5 µm < 10 µm: touching, and it says so
    assert p.depth_m == pytest.approx(5e-6, rel=0.05)
    assert p.volume_m3 == pytest.approx(volume, rel=0.05)
    assert any("tolerance" in x for x in coll.warnings)
    fine, _ = report.collision("x", asm, w, 1e-6)
    p = only(fine.pairs)
    assert (p.status, fine.tolerance_m) == ("interfering", 1e-6)
    assert p.depth_m == pytest.approx(5e-6, rel=0.05)
    clear = report.clearance("x", asm, w, 0.005, 1e-6)
    assert clear.tolerance_m == 1e-6
    assert (clear.minimum.status, clear.minimum.depth_m) == ("interfering", p.depth_m)


# --- assembly mass with overlaps -------------------------------------------------------------
def test_mass_names_the_overlap_and_the_mass_counted_twice() -> None:
    outer, inner, _, _ = INSIDE["pin in tube wall"]
    parts = [occt_part("tube", outer, "steel-s235"), occt_part("pin", inner, "aluminium-6061-t6")]
    asm, w = assembly(parts), CollisionWorld(parts)
    out = report.mass("x", asm, world=w)
    volume = common_volume(outer, inner)
    o = only(out.overlaps)
    assert (o.a, o.b) == ("tube", "pin")
    assert o.volume_m3 == pytest.approx(volume, rel=2e-3)
    smaller = min(p.density_kg_m3 for p in parts)
    assert o.mass_kg == pytest.approx(volume * smaller, rel=2e-3)
    assert any("twice" in x for x in out.warnings)
    alone = report.mass("x", asm, names=["pin"], world=w)
    assert alone.overlaps == [] and not any("twice" in x for x in alone.warnings)
