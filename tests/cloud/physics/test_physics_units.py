"""Units from the file: STEP files state theirs (m, mm, inch), unitless meshes of implausible size are flagged,
float32 files far from the origin are flagged when their precision is coarser than the tolerance."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from physics_helpers import inline

from cloud.physics import report
from cloud.physics.assembly import AssemblySpec, load_assembly
from cloud.physics.errors import AssemblyError
from cloud.physics.interference import CollisionWorld
from cloud.physics.mass import part_mass_properties
from cloud.physics.materials import get_material
from cloud.physics.mesh import load_mesh_bytes

STEEL = get_material("steel-s235").density


def step_bytes(shape, unit: str, directory: Path) -> bytes:
    """``shape`` (built in mm) written by OCCT to a STEP file in ``unit`` (MM, M, INCH, CM)."""
    from OCP.Interface import Interface_Static
    from OCP.STEPControl import STEPControl_AsIs, STEPControl_Writer

    writer = STEPControl_Writer()  # registers the write.* settings: set the unit after it exists
    assert Interface_Static.SetCVal_s("write.step.unit", unit)
    try:
        writer.Transfer(shape, STEPControl_AsIs)
        path = directory / f"part-{unit}.step"
        writer.Write(str(path))
    finally:
        Interface_Static.SetCVal_s("write.step.unit", "MM")
    return path.read_bytes()


def spec(parts: list[dict]) -> AssemblySpec:
    return AssemblySpec.model_validate({"name": "units", "parts": parts})


def step_part(data: bytes, **extra: object) -> dict:
    return {"name": "plate", "material": "steel-s235",
            "mesh": {"format": "step", "data_base64": base64.b64encode(data).decode()}, **extra}


@pytest.fixture(scope="module")
def plate() -> Iterator[tuple[object, float]]:
    """OCCT's plate with three holes (120 × 80 × 15 mm) and its exact volume in m³ (BRepGProp)."""
    pytest.importorskip("OCP")
    import occt

    shape = occt.plate_with_holes()
    volume_mm3, _, _ = occt.exact_properties(shape)
    yield shape, volume_mm3 * 1e-9


@pytest.mark.parametrize(("written", "unit"), [("MM", "mm"), ("M", "m"), ("INCH", "inch")])
def test_a_step_file_in_m_mm_or_inch_gives_the_mass_of_the_solid(plate, tmp_path, written, unit) -> None:
    shape, volume_m3 = plate
    data = step_bytes(shape, written, tmp_path)
    for stated in (None, unit):  # the unit left out, or stated as the file's
        asm = load_assembly(spec([step_part(data) if stated is None else step_part(data, unit=stated)]))
        part = asm.parts[0]
        assert part.unit == unit
        props = part_mass_properties(part.mesh, part.density_kg_m3)
        assert props.mass_kg == pytest.approx(volume_m3 * STEEL, rel=1e-3)
        assert abs(props.volume_m3 - volume_m3) <= props.bound_volume_m3
        # 120 mm long whatever the file's unit
        assert np.ptp(part.mesh.vertices[:, 0]) == pytest.approx(0.120, rel=1e-9)
        assert report.assembly_info("x", asm).parts[0].unit == unit


@pytest.mark.parametrize(("written", "stated", "words"), [
    ("INCH", "mm", "the STEP file is in inches, the part says mm"),
    ("M", "mm", "the STEP file is in metres, the part says mm"),
    ("MM", "inch", "the STEP file is in millimetres, the part says inch"),
])
def test_a_part_unit_that_contradicts_the_step_file_is_refused(plate, tmp_path, written, stated, words) -> None:
    data = step_bytes(plate[0], written, tmp_path)
    with pytest.raises(AssemblyError) as caught:
        load_assembly(spec([step_part(data, unit=stated)]))
    [problem] = caught.value.problems
    assert problem.path == "parts[0].unit"
    assert problem.message.startswith(f"part plate: {words}")


def test_a_step_file_in_a_unit_we_do_not_name_is_converted_and_flagged(plate, tmp_path) -> None:
    shape, volume_m3 = plate
    data = step_bytes(shape, "CM", tmp_path)
    asm = load_assembly(spec([step_part(data)]))
    part = asm.parts[0]
    assert part.unit == "mm"
    assert part_mass_properties(part.mesh, STEEL).mass_kg == pytest.approx(volume_m3 * STEEL, rel=1e-3)
    assert any("centimetre" in w and "converted" in w for w in asm.warnings)
    with pytest.raises(AssemblyError, match="the STEP file is in centimetre, the part says m"):
        load_assembly(spec([step_part(data, unit="m")]))


def test_load_mesh_bytes_takes_the_step_files_unit(plate, tmp_path) -> None:
    mesh = load_mesh_bytes(step_bytes(plate[0], "INCH", tmp_path), "step")
    assert mesh.unit == "inch" and mesh.check.file_unit == "inch"
    assert np.ptp(mesh.vertices[:, 1]) == pytest.approx(0.080, rel=1e-9)


# --- formats without units ---------------------------------------------------------------------------------


def stl_part(name: str, tm: trimesh.Trimesh, **extra: object) -> dict:
    return {"name": name, "material": "steel-s235", "mesh": inline(tm), **extra}


def test_a_metre_stl_left_at_millimetres_is_flagged_in_every_answer() -> None:
    cube = trimesh.creation.box((0.05, 0.05, 0.05))  # a 50 mm cube written in metres
    asm = load_assembly(spec([stl_part("cube", cube), stl_part("ok", trimesh.creation.box((50, 50, 50)),
                                                                   pose={"translation": [200, 0, 0]})]))
    mass = STEEL * 0.05**3 * 1e-9  # what the file reads as in mm: 981 ng
    [flag] = asm.parts[0].mesh.check.flags
    assert "implausibly small" in flag and '"unit": "m"' in flag
    assert f"{mass * 1e12:.3g} ng" in flag and f"{0.05 * 3**0.5 * 1e3:.3g} µm across" in flag
    assert asm.parts[1].mesh.check.flags == ()
    assert [w for w in asm.warnings if "implausibly" in w] == [f"part cube: {flag}"]
    info = report.assembly_info("x", asm)
    assert info.parts[0].flags == [flag] and f"part cube: {flag}" in info.warnings
    check, _ = report.collision("x", asm, CollisionWorld(asm.parts), 1e-5)
    assert f"part cube: {flag}" in check.warnings


def test_a_thin_light_part_and_a_huge_one_are_flagged() -> None:
    foil = trimesh.creation.box((0.9, 0.9, 0.1))  # mm: 1.28 mm across, 0.64 mg of steel
    huge = trimesh.creation.box((50_000, 100, 100))  # a mm file read as metres: 50 km long
    asm = load_assembly(spec([stl_part("foil", foil), stl_part("huge", huge, unit="m")]))
    foil_flag, huge_flag = (p.mesh.check.flags[0] for p in asm.parts)
    assert "implausibly small" in foil_flag and f"{STEEL * 0.081e-9 * 1e9:.3g} µg" in foil_flag
    assert "implausibly large" in huge_flag and "50,000 m across" in huge_flag
    assert '"unit": "mm" (50 m across)' in huge_flag


# --- float32 coordinates -----------------------------------------------------------------------------------


def binary_stl(tm: trimesh.Trimesh) -> bytes:
    triangles = np.asarray(tm.triangles, dtype=np.float32)
    out = bytearray(b"binary".ljust(80, b" ") + struct.pack("<I", len(triangles)))
    for tri in triangles:
        out += struct.pack("<3f", 0, 0, 0) + tri.tobytes() + b"\0\0"
    return bytes(out)


def boxes_with_a_gap(origin_m: float, gap_m: float) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """Two 10 mm cubes in metres, along x from ``origin_m``, ``gap_m`` apart."""
    a = trimesh.creation.box((0.01, 0.01, 0.01))
    a.apply_translation((origin_m, 0, 0))
    b = a.copy()
    b.apply_translation((0.01 + gap_m, 0, 0))
    return a, b


def raw(name: str, data: bytes, unit: str) -> dict:
    return {"name": name, "material": "steel-s235", "unit": unit,
            "mesh": {"format": "stl", "data_base64": base64.b64encode(data).decode()}}


def test_a_binary_stl_100_m_from_the_origin_is_flagged_for_its_float32_precision() -> None:
    a, b = boxes_with_a_gap(100.0, 1e-6)
    precision = float(np.spacing(np.float32(100.0)))  # 7.63 µm: the gap of 1 µm cannot be stored
    asm = load_assembly(spec([raw("a", binary_stl(a), "m"), raw("b", binary_stl(b), "m")]))
    for part in asm.parts:
        assert part.mesh.check.float32_precision_m == pytest.approx(precision, rel=1e-12)
        [flag] = part.mesh.check.flags
        assert "float32 coordinates reach 100 m from the origin" in flag
        assert "precision is 7.63 µm" in flag and "10 µm touching tolerance" in flag
    check, _ = report.collision("x", asm, CollisionWorld(asm.parts), 1e-5)
    assert sum("float32" in w for w in check.warnings) == 2
    gap = np.float32(100.01 + 1e-6) - np.float32(100.01)  # what the file holds instead of 1 µm
    assert gap in (0.0, np.float32(precision))


def test_the_same_stl_near_the_origin_or_as_text_is_not_flagged() -> None:
    a, b = boxes_with_a_gap(0.0, 1e-6)
    asm = load_assembly(spec([raw("a", binary_stl(a), "m"), raw("b", binary_stl(b), "m")]))
    assert not any("float32" in w for w in asm.warnings)
    far, _ = boxes_with_a_gap(100.0, 1e-6)
    text = load_assembly(spec([raw("t", far.export(file_type="stl_ascii").encode(), "m")]))
    assert text.parts[0].mesh.check.float32_precision_m is None


def test_a_finer_tolerance_asked_for_adds_the_warning_to_that_answer() -> None:
    a, b = boxes_with_a_gap(2.0, 1e-4)  # 2 m away: spacing 0.24 µm, fine for 10 µm, not for 1 µm
    asm = load_assembly(spec([raw("a", binary_stl(a), "m"), raw("b", binary_stl(b), "m")]))
    assert not asm.warnings
    world = CollisionWorld(asm.parts)
    assert report.collision("x", asm, world, 1e-5)[0].warnings == []
    fine = report.collision("x", asm, world, 1e-6)[0].warnings
    assert len(fine) == 2 and all("1 µm touching tolerance" in w for w in fine)

