"""Mass properties against analytic solids and against OCCT's exact CAD mass properties."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import trimesh
from physics_helpers import mesh_of

from cloud.physics.errors import OpenMeshError
from cloud.physics.mass import combine, part_mass_properties
from cloud.physics.materials import material_table
from cloud.physics.mesh import build_part_mesh

RHO = 7850.0
MM = 1e-3

# (name, mesh in mm, exact volume m³, exact inertia diag about CoM per density m⁵, CoM m)
r, h = 20.0 * MM, 60.0 * MM
ri = 12.0 * MM
ANALYTIC = [
    ("box 40x60x80 mm", trimesh.creation.box((40.0, 60.0, 80.0)), 0.04 * 0.06 * 0.08,
     np.array([0.06**2 + 0.08**2, 0.04**2 + 0.08**2, 0.04**2 + 0.06**2]) * 0.04 * 0.06 * 0.08 / 12,
     np.zeros(3)),
    ("cylinder r20 h60, 512 sections", trimesh.creation.cylinder(radius=20.0, height=60.0, sections=512),
     math.pi * r**2 * h,
     math.pi * r**2 * h * np.array([(3 * r**2 + h**2) / 12] * 2 + [r**2 / 2]), np.zeros(3)),
    ("sphere r20, icosphere level 6", trimesh.creation.icosphere(6, radius=20.0), 4 / 3 * math.pi * r**3,
     np.full(3, 0.4 * r**2 * 4 / 3 * math.pi * r**3), np.zeros(3)),
    ("tube r12..20 h60, 512 sections",
     trimesh.creation.annulus(r_min=12.0, r_max=20.0, height=60.0, sections=512),
     math.pi * (r**2 - ri**2) * h,
     math.pi * (r**2 - ri**2) * h * np.array([(3 * (r**2 + ri**2) + h**2) / 12] * 2
                                             + [(r**2 + ri**2) / 2]), np.zeros(3)),
    ("cone r20 h60, 1024 sections", trimesh.creation.cone(radius=20.0, height=60.0, sections=1024),
     math.pi * r**2 * h / 3,
     math.pi * r**2 * h / 3 * np.array([3 / 20 * r**2 + 3 / 80 * h**2] * 2 + [3 / 10 * r**2]),
     np.array([0, 0, h / 4])),
]


@pytest.mark.parametrize(("name", "tm", "volume", "inertia", "com"), ANALYTIC, ids=[a[0] for a in ANALYTIC])
def test_analytic_solids_within_a_tenth_of_a_percent(name, tm, volume, inertia, com) -> None:
    props = part_mass_properties(mesh_of(tm), RHO, name)
    assert props.volume_m3 == pytest.approx(volume, rel=1e-3)
    assert props.mass_kg == pytest.approx(volume * RHO, rel=1e-3)
    np.testing.assert_allclose(props.com_m, com, atol=1e-3 * h)
    np.testing.assert_allclose(np.diag(props.inertia_com), inertia * RHO, rtol=1e-3)
    # the reported tessellation bound covers the actual error
    assert abs(props.volume_m3 - volume) <= props.bound_volume_m3 + 1e-15
    assert np.abs(np.diag(props.inertia_com) - inertia * RHO).max() <= props.bound_inertia_kgm2 + 1e-15


def test_far_from_origin_and_rotated_part_keeps_its_properties() -> None:
    tm = trimesh.creation.box((40.0, 60.0, 80.0))
    local = part_mass_properties(mesh_of(tm), RHO)
    pose = trimesh.transformations.random_rotation_matrix(np.random.default_rng(3).random(3))
    pose[:3, 3] = [19.7, -14.2, 8.9]  # metres, far corner of a 20 m cell
    world = local.transformed(pose)
    moments_local, _ = local.principal()
    moments_world, axes = world.principal()
    np.testing.assert_allclose(moments_world, moments_local, rtol=1e-12)
    np.testing.assert_allclose(world.com_m, pose[:3, 3], atol=1e-12)
    assert np.linalg.det(axes) == pytest.approx(1.0)


def test_inertia_about_a_frame_uses_the_parallel_axis_theorem() -> None:
    props = part_mass_properties(mesh_of(trimesh.creation.box((40.0, 60.0, 80.0))), RHO)
    frame = np.eye(4)
    frame[:3, 3] = [0.1, 0.0, 0.0]
    about = props.inertia_about(frame)
    assert about[1, 1] == pytest.approx(props.inertia_com[1, 1] + props.mass_kg * 0.01)
    assert about[0, 0] == pytest.approx(props.inertia_com[0, 0])


def test_two_halves_combine_to_the_whole() -> None:
    half = part_mass_properties(mesh_of(trimesh.creation.box((20.0, 60.0, 80.0))), RHO)
    left = half.transformed(trimesh.transformations.translation_matrix([-0.01, 0, 0]))
    right = half.transformed(trimesh.transformations.translation_matrix([0.01, 0, 0]))
    whole = part_mass_properties(mesh_of(trimesh.creation.box((40.0, 60.0, 80.0))), RHO)
    both = combine([left, right])
    assert both.mass_kg == pytest.approx(whole.mass_kg)
    np.testing.assert_allclose(both.inertia_com, whole.inertia_com, rtol=1e-9, atol=1e-15)


def test_open_mesh_is_refused_not_silently_wrong() -> None:
    tm = trimesh.creation.box((10.0, 10.0, 10.0))
    with pytest.raises(OpenMeshError, match="closed"):
        part_mass_properties(build_part_mesh(tm.vertices, tm.faces[:-2]), RHO)


def test_materials_table_has_25_sourced_materials_in_every_class() -> None:
    table = material_table()
    assert len(table.materials) >= 25
    classes = {m.category for m in table.materials.values()}
    assert {"steel", "aluminium alloy", "titanium alloy", "copper alloy", "cast iron", "plastic",
            "rubber", "wood", "glass"} <= classes
    for m in table.materials.values():
        si = m.si()
        assert 400 < si["density_kg_m3"] < 9000
        assert si["youngs_modulus_pa"] > 0 and 0 < si["poissons_ratio"] < 0.5
        for field in ("density_kg_m3", "youngs_modulus_gpa", "yield_strength_mpa",
                      "thermal_conductivity_w_mk", "specific_heat_j_kgk", "expansion_1e6_k"):
            assert getattr(m, field).source in table.sources


# --- OCCT reference (cadquery-ocp, the cad extra): only these tests need it ----------------
needs_ocp = pytest.mark.skipif(importlib.util.find_spec("OCP") is None,
                               reason="cadquery-ocp (OCP, the cad extra) is not installed")


@needs_ocp
@pytest.mark.parametrize("make", ["plate_with_holes", "filleted_block", "threaded_rod"])
def test_matches_occt_exact_mass_properties_within_the_bound(make: str) -> None:
    import occt

    shape = getattr(occt, make)()
    volume, com, inertia = occt.exact_properties(shape)  # mm units, density 1
    verts, faces = occt.tessellate(shape, deflection=0.003)
    props = part_mass_properties(build_part_mesh(verts, faces, "mm"), 1.0, make)
    v_exact, c_exact, i_exact = volume * 1e-9, com * 1e-3, inertia * 1e-15
    assert props.volume_m3 == pytest.approx(v_exact, rel=1e-3)
    assert abs(props.volume_m3 - v_exact) <= props.bound_volume_m3
    assert np.linalg.norm(props.com_m - c_exact) <= props.bound_com_m
    assert np.abs(props.inertia_com - i_exact).max() <= 1e-3 * np.abs(i_exact).max()
    assert np.abs(props.inertia_com - i_exact).max() <= props.bound_inertia_kgm2


@needs_ocp
def test_step_file_is_tessellated_through_the_cad_kernel(tmp_path) -> None:
    import occt
    from OCP.STEPControl import STEPControl_AsIs, STEPControl_Writer

    from cloud.physics.mesh import load_mesh_bytes

    writer = STEPControl_Writer()
    writer.Transfer(occt.plate_with_holes(), STEPControl_AsIs)
    writer.Write(str(tmp_path / "plate.step"))
    mesh = load_mesh_bytes((tmp_path / "plate.step").read_bytes(), "step", "mm", step_tolerance=0.003)
    volume, _, _ = occt.exact_properties(occt.plate_with_holes())
    props = part_mass_properties(mesh, 1.0)
    assert props.volume_m3 == pytest.approx(volume * 1e-9, rel=1e-3)
