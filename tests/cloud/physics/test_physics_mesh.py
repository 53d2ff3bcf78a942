"""Mesh loading and validation: formats, units, malformed input, open meshes, winding repair."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.physics.errors import MeshDataError, MeshFormatError, MeshTooLargeError, PhysicsError
from cloud.physics.mesh import MeshLimits, build_part_mesh, format_from_name, load_mesh_bytes

BOX = trimesh.creation.box((10.0, 20.0, 30.0))


def _bytes(fmt: str) -> bytes:
    data = BOX.export(file_type=fmt)
    return data.encode() if isinstance(data, str) else data


@pytest.mark.parametrize("fmt", ["stl", "stl_ascii", "obj", "ply", "glb"])
def test_every_format_loads_the_same_box_in_metres(fmt: str) -> None:
    mesh = load_mesh_bytes(_bytes(fmt), "stl" if fmt == "stl_ascii" else fmt, "mm")
    assert mesh.closed
    assert mesh.check.faces == 12
    np.testing.assert_allclose(np.ptp(mesh.vertices, axis=0), [0.01, 0.02, 0.03], rtol=1e-6)


@pytest.mark.parametrize(("unit", "size_m"), [("mm", 0.01), ("m", 10.0), ("inch", 0.254)])
def test_units_scale_to_metres(unit: str, size_m: float) -> None:
    mesh = load_mesh_bytes(_bytes("stl"), "stl", unit)
    assert np.ptp(mesh.vertices[:, 0]) == pytest.approx(size_m, rel=1e-6)


def test_unknown_format_is_refused_with_the_supported_list() -> None:
    with pytest.raises(MeshFormatError, match="stl"):
        load_mesh_bytes(b"abc", "dwg")
    with pytest.raises(MeshFormatError, match="unknown mesh format"):
        format_from_name("part.3mf")


def test_truncated_binary_stl_says_how_many_bytes_are_missing() -> None:
    data = _bytes("stl")
    with pytest.raises(MeshDataError, match="truncated"):
        load_mesh_bytes(data[:-20], "stl")


def test_over_limit_files_are_refused_before_parsing() -> None:
    with pytest.raises(MeshTooLargeError, match="limit"):
        load_mesh_bytes(_bytes("stl"), "stl", limits=MeshLimits(max_bytes=100))
    huge = b"\0" * 80 + struct.pack("<I", 10_000_000) + b"\0" * 50
    with pytest.raises(MeshTooLargeError, match="10,000,000"):
        load_mesh_bytes(huge, "stl")


def test_nan_vertices_are_refused() -> None:
    verts = BOX.vertices.copy()
    verts[3, 1] = np.nan
    with pytest.raises(MeshDataError, match="NaN"):
        build_part_mesh(verts, BOX.faces)


def test_empty_and_flat_meshes_are_refused() -> None:
    with pytest.raises(MeshDataError, match="empty"):
        build_part_mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=int))
    flat = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=float)
    with pytest.raises(MeshDataError, match="flat"):
        build_part_mesh(flat, np.array([[0, 1, 2], [1, 3, 2]]))


def test_open_mesh_is_flagged_with_its_consequences() -> None:
    mesh = build_part_mesh(BOX.vertices, BOX.faces[:-1])
    assert not mesh.closed
    assert mesh.check.boundary_edges == 3
    assert any("not defined" in f and "clearances" in f for f in mesh.check.flags)


def test_inconsistent_winding_is_repaired_and_reported() -> None:
    faces = BOX.faces.copy()
    faces[:2] = faces[:2, ::-1]
    mesh = build_part_mesh(BOX.vertices, faces)
    assert mesh.closed
    assert any("flipped 2" in r for r in mesh.check.repairs)
    assert mesh.trimesh.volume == pytest.approx(6000.0 * 1e-9)


def test_inside_out_mesh_is_inverted() -> None:
    mesh = build_part_mesh(BOX.vertices, BOX.faces[:, ::-1])
    assert mesh.trimesh.volume > 0
    assert any("inverted" in r for r in mesh.check.repairs)


def test_tube_cavity_keeps_its_orientation() -> None:
    outer = trimesh.creation.icosphere(3, radius=10.0)
    inner = trimesh.creation.icosphere(3, radius=5.0)
    inner.invert()
    hollow = trimesh.util.concatenate([outer, inner])
    mesh = build_part_mesh(hollow.vertices, hollow.faces)
    assert mesh.trimesh.volume == pytest.approx((outer.volume - abs(inner.volume)) * 1e-9)


def test_gltf_with_external_buffers_is_refused_clearly() -> None:
    with pytest.raises(MeshDataError, match="GLTF"):
        load_mesh_bytes(b'{"asset": {"version": "2.0"}, "buffers": [{"uri": "x.bin"}]}', "gltf")


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=400), fmt=st.sampled_from(["stl", "obj", "ply", "glb"]))
def test_random_bytes_never_escape_as_foreign_errors(data: bytes, fmt: str) -> None:
    try:
        load_mesh_bytes(data, fmt)
    except PhysicsError:
        pass


# Words of Python's and numpy's own errors: a message holding one told the engineer nothing about the file.
INTERNALS = ("NoneType", "reshape", "unpack", "array element", "index out of", "out of bounds", "KeyError",
             "object is not", "inhomogeneous", "struct", "dtype")
_PLY_HEAD = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
_FACET = b"facet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nendfacet\n"


@pytest.mark.parametrize(("fmt", "data", "words"), [
    ("stl", b"solid x\n" + _FACET.replace(b"vertex 1 0 0", b"vertex 1 0") + b"endsolid x\n",
     "ASCII STL line 5: 'vertex 1 0' must be 'vertex x y z' with three numbers"),
    ("stl", b"solid x\n" + _FACET.replace(b"vertex 0 0 0", b"vertex 0 0 0 0") + b"endsolid x\n",
     "ASCII STL line 4: 'vertex 0 0 0 0' must be 'vertex x y z' with three numbers"),
    ("stl", b"solid x\n" + _FACET.replace(b"vertex 0 1 0\n", b"") + b"endsolid x\n",
     "ASCII STL line 6: the loop ending here has 2 'vertex' lines"),
    ("ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
     "vertex element has no 'property float y', 'property float z'"),
    ("ply", b"ply\njunk\n", "the PLY header has no 'end_header' line"),
    ("ply", _PLY_HEAD + b"end_header\n0 0 0\n", "declares no 'element face N'"),
    ("glb", b"glTF\x02\x00\x00\x00junk", "the GLB header declares 1,802,401,130 bytes but the data has 12"),
    ("glb", b"junkjunkjunkjunk", "GLB data must start with the bytes 'glTF'"),
    ("gltf", b"not json", "the glTF is not valid JSON (line 1, column 1)"),
    ("gltf", b'{"asset": {"version": "2.0"}, "meshes": [{}]}', "the glTF's meshes[0] has no 'primitives' list"),
    ("gltf", b'{"asset": {"version": "2.0"}, "meshes": [{"primitives": [{"attributes": {"POSITION": 3}}]}]}',
     "meshes[0].primitives[0] names accessor 3, which 'accessors' does not have"),
    ("obj", b"v 0 0 0\nv 1 0 0\nf 1 2 3\n", "OBJ line 3: 'f 1 2 3' names vertex 3, but the file has 2 vertices"),
    ("obj", b"v a b c\nf 1 2 3\n", "OBJ line 1: 'v a b c' must be 'v x y z' with three numbers"),
])
def test_malformed_files_are_explained_in_the_format_s_own_terms(fmt: str, data: bytes, words: str) -> None:
    with pytest.raises(MeshDataError) as caught:
        load_mesh_bytes(data, fmt)
    message = str(caught.value)
    assert words in message
    assert not [w for w in INTERNALS if w in message], message
    assert not re.search(r": '\w+'$", message), message  # a bare key in quotes, as a KeyError prints
