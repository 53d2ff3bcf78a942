"""Loading and validating part meshes: STL (binary/ASCII), OBJ, PLY, GLB/glTF and, optionally, STEP.

A loaded mesh is converted to metres, its duplicate vertices are joined and
it is checked: empty, degenerate, NaN/inf vertices and over-limit inputs are
refused with a ``PhysicsError``; open or non-manifold meshes are accepted but
flagged, with what that means for each result; inconsistent winding is
repaired where the mesh is closed (and the repair is reported).
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import PurePath

import numpy as np
import trimesh
from pydantic import BaseModel, ConfigDict, Field

from cloud.physics.errors import MeshDataError, MeshFormatError, MeshTooLargeError, UnitMismatchError
from cloud.physics.geometry import (
    edge_stats,
    face_components,
    make_winding_consistent,
    signed_volumes,
    winding_number,
)
from cloud.physics.units import METRES_PER, STEP_UNITS, UNIT_WORDS, LengthUnit

__all__ = [
    "FORMATS",
    "MeshCheck",
    "MeshLimits",
    "PartMesh",
    "build_part_mesh",
    "format_from_name",
    "load_mesh_bytes",
]

log = logging.getLogger(__name__)

FORMATS = ("stl", "obj", "ply", "glb", "gltf", "step")
_SUFFIXES = {".stl": "stl", ".obj": "obj", ".ply": "ply", ".glb": "glb", ".gltf": "gltf",
             ".step": "step", ".stp": "step"}

OPEN_MEANING = (
    "volume, mass, centre of mass, inertia and intersection volumes are not defined for it and "
    "are refused; distances, clearances and touching/crossing checks use its surface and remain "
    "valid, but a part lying wholly inside it is not detected"
)


class MeshLimits(BaseModel):
    """Upper bounds on what one mesh may cost to load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="largest mesh file, bytes")
    max_faces: int = Field(default=2_000_000, ge=1, description="most triangles in one mesh")


@dataclass(frozen=True)
class MeshCheck:
    """What validation found. ``flags`` explain, in words, what a defect means for the results."""

    faces: int
    vertices: int
    boundary_edges: int
    non_manifold_edges: int
    closed: bool
    repairs: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    chord_tolerance_m: float | None = None
    source_format: str | None = None  # the file's format; None for arrays given directly
    file_unit: str | None = None  # the length unit the file declares (STEP), when it is one of ours
    float32_reach_m: float | None = None  # largest |coordinate| of a float32 file (binary STL, GLB)
    float32_precision_m: float | None = None  # float32 spacing at that coordinate, in metres


@dataclass(frozen=True, eq=False)
class PartMesh:
    """A validated triangle mesh in its own (part) frame, in metres."""

    vertices: np.ndarray
    faces: np.ndarray
    check: MeshCheck
    unit: LengthUnit = "mm"
    _extra: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def closed(self) -> bool:
        return self.check.closed

    @cached_property
    def digest(self) -> bytes:
        """A hash of the geometry: parts with equal digests share collision structures."""
        h = hashlib.blake2b(digest_size=16)
        h.update(np.ascontiguousarray(self.vertices, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.faces, dtype=np.int64).tobytes())
        return h.digest()

    @cached_property
    def triangles(self) -> np.ndarray:
        return self.vertices[self.faces]

    @cached_property
    def trimesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, process=False, validate=False)


def format_from_name(name: str) -> str:
    """The mesh format implied by a file name; MeshFormatError when the suffix is unknown."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in _SUFFIXES:
        raise MeshFormatError(
            f"unknown mesh format {suffix or '(no suffix)'!r} of {name!r}; "
            "give .stl, .obj, .ply, .glb, .gltf, .step or .stp"
        )
    return _SUFFIXES[suffix]


_TEXT = bytes(range(32, 127)) + b"\t\n\r\f\v"


def _is_text(data: bytes) -> bool:
    """Printable ASCII only: ASCII STL. (A binary STL's header may start with 'solid' too.)"""
    return not data.translate(None, _TEXT)


def _check_ascii_stl(data: bytes) -> None:
    """What is wrong with text that starts like ASCII STL ('solid') but holds no triangle."""
    if b"facet" not in data.lower():
        first = data.lstrip().split(b"\n", 1)[0][:60].decode("ascii", "replace").strip()
        raise MeshDataError(
            f"ASCII STL has no facets: after {first!r} there is no 'facet normal' block; "
            "each triangle is 'facet normal nx ny nz', 'outer loop', three 'vertex x y z' lines, "
            "'endloop', 'endfacet', and the file ends with 'endsolid'"
        )


def _check_stl_header(data: bytes, limits: MeshLimits) -> None:
    """Binary STL states its triangle count: refuse over-limit or truncated files before parsing."""
    head = data[:512].lstrip().lower()
    if head.startswith(b"solid") and (b"facet" in data[:4096].lower() or _is_text(data[:4096])):
        _check_ascii_stl(data)
        return  # ASCII STL
    if len(data) < 84:
        raise MeshDataError(
            f"STL data is too short to be binary STL ({len(data)} bytes; a binary STL has an 80-byte "
            "header and a triangle count) and does not start with 'solid' as ASCII STL does"
        )
    (count,) = struct.unpack("<I", data[80:84])
    if count > limits.max_faces:
        raise MeshTooLargeError(f"STL declares {count:,} triangles; the limit is {limits.max_faces:,}")
    expected = 84 + 50 * count
    if len(data) < expected:
        raise MeshDataError(
            f"binary STL is truncated: header declares {count:,} triangles "
            f"({expected:,} bytes) but the data has {len(data):,} bytes"
        )


def _parse(data: bytes, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=fmt, process=False)
        if isinstance(loaded, trimesh.Scene):
            if not loaded.geometry:
                raise MeshDataError(f"the {fmt.upper()} data contains no geometry")
            loaded = loaded.to_mesh()  # applies the scene-graph transforms
    except MeshDataError:
        raise
    # Third-party parsers raise anything (IndexError, struct.error, KeyError, ...) on
    # malformed bytes; this is the one boundary where all of them become ours.
    except Exception as exc:  # noqa: BLE001
        raise MeshDataError(f"could not read the {fmt.upper()} data: {exc or type(exc).__name__}") from exc
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshDataError(
            f"the {fmt.upper()} data holds no triangle mesh (found {type(loaded).__name__})"
        )
    return np.asarray(loaded.vertices, dtype=float), np.asarray(loaded.faces)


def load_mesh_bytes(
    data: bytes,
    fmt: str,
    unit: LengthUnit | None = None,
    limits: MeshLimits | None = None,
    *,
    step_tolerance: float = 0.01,
) -> PartMesh:
    """Parse and validate mesh bytes in ``fmt`` whose coordinates are in ``unit`` (None: the default).

    A STEP file states its unit: ``unit`` None takes it, a different ``unit`` is refused
    (UnitMismatchError). Other formats have none: their coordinates are in ``unit`` (default mm).
    ``step_tolerance`` is the chord tolerance, in millimetres, used to tessellate STEP input.
    """
    limits = limits or MeshLimits()
    fmt = fmt.lower().lstrip(".")
    fmt = {"stp": "step", "stl_ascii": "stl"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise MeshFormatError(f"unknown mesh format {fmt!r}; give one of {', '.join(FORMATS)}")
    if len(data) > limits.max_bytes:
        raise MeshTooLargeError(
            f"mesh data is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes"
        )
    if not data:
        raise MeshDataError("mesh data is empty (0 bytes)")
    if fmt == "step":
        return _load_step(data, unit, limits, step_tolerance)
    unit = unit or "mm"
    float32 = fmt == "glb"  # glTF positions are float32 by the specification
    if fmt == "stl":
        _check_stl_header(data, limits)
        float32 = not _is_text(data[:4096])
    vertices, faces = _parse(data, fmt)
    mesh = build_part_mesh(vertices, faces, unit, limits)
    if float32 and len(vertices):
        largest = float(np.abs(vertices).max())  # file coordinates, before any repair
        precision = float(np.spacing(np.float32(largest))) * METRES_PER[unit]
        mesh = replace(mesh, check=replace(mesh.check, float32_reach_m=largest * METRES_PER[unit],
                                           float32_precision_m=precision))
    return replace(mesh, check=replace(mesh.check, source_format=fmt))


def _load_step(data: bytes, unit: LengthUnit | None, limits: MeshLimits, chord_mm: float) -> PartMesh:
    """A STEP part in the unit its file declares; a part whose ``unit`` says otherwise is refused."""
    from cloud.physics.cad import read_step

    step = read_step(data, chord_mm)
    names = step.length_units
    known = {STEP_UNITS.get(n) for n in names}
    file_unit = known.pop() if len(known) == 1 else None
    flags: list[str] = []
    if file_unit is None and names:
        listed = ", ".join(names)
        if unit is not None and len(names) == 1:
            raise UnitMismatchError(
                f"the STEP file is in {listed}, the part says {unit}; leave 'unit' out "
                "(the part's features are then in mm)", "unit")
        flags.append(f"the STEP file's length unit is {listed}; its geometry was converted, and the part's "
                     f"unit for features and results is {unit or 'mm'}")
    elif file_unit is not None and unit is not None and unit != file_unit:
        raise UnitMismatchError(
            f"the STEP file is in {UNIT_WORDS[file_unit]}, the part says {unit}; "
            f"set unit to {file_unit!r} or leave it out (the file's unit is used)", "unit")
    resolved: LengthUnit = unit or file_unit or "mm"
    mesh = build_part_mesh(step.vertices_mm, step.faces, "mm", limits, chord_tolerance_m=chord_mm * 1e-3)
    check = replace(mesh.check, flags=mesh.check.flags + tuple(flags), source_format="step",
                    file_unit=file_unit)
    return replace(mesh, check=check, unit=resolved)


def _refuse_bad_arrays(vertices: np.ndarray, faces: np.ndarray, limits: MeshLimits) -> None:
    if vertices.ndim != 2 or vertices.shape[1:] != (3,):
        raise MeshDataError(f"vertices must be an (N, 3) array (got shape {vertices.shape})")
    if faces.ndim != 2 or faces.shape[1:] != (3,):
        raise MeshDataError(f"faces must be triangles, an (N, 3) array (got shape {faces.shape})")
    if len(faces) == 0 or len(vertices) == 0:
        raise MeshDataError("mesh is empty: it has no triangles")
    if len(faces) > limits.max_faces:
        raise MeshTooLargeError(f"mesh has {len(faces):,} triangles; the limit is {limits.max_faces:,}")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MeshDataError(
            f"{int(bad.sum())} vertices have NaN or infinite coordinates (first: vertex {first})"
        )
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshDataError(f"face indices must be 0..{len(vertices) - 1} (got {faces.min()}..{faces.max()})")


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Invert shells with negative volume unless they lie inside another shell (cavities)."""
    comp = face_components(faces)
    volumes = signed_volumes(vertices, faces, comp)
    inverted = 0
    for label in np.flatnonzero(volumes < 0):
        mask = comp == label
        others = faces[~mask]
        inside = (
            len(others) > 0
            and abs(winding_number(vertices[faces[mask][0, 0]][None], vertices[others])[0]) > 0.5
        )
        if not inside:
            faces[mask] = faces[mask][:, ::-1]
            inverted += 1
    return faces, inverted


def build_part_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    unit: LengthUnit = "mm",
    limits: MeshLimits | None = None,
    *,
    chord_tolerance_m: float | None = None,
) -> PartMesh:
    """Validate raw arrays (coordinates in ``unit``) into a PartMesh in metres."""
    limits = limits or MeshLimits()
    vertices = np.asarray(vertices, dtype=float)
    faces = np.asarray(faces)
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise MeshDataError("face indices must be integers")
    _refuse_bad_arrays(vertices, faces, limits)
    mesh = trimesh.Trimesh(vertices * METRES_PER[unit], faces, process=False, validate=False)
    mesh.merge_vertices()  # STL stores every corner separately: join equal positions
    repairs: list[str] = []
    keep = mesh.nondegenerate_faces(height=1e-12 * max(mesh.scale, 1e-300))
    keep &= mesh.unique_faces()
    if not keep.all():
        repairs.append(f"removed {int((~keep).sum())} degenerate or duplicate triangles")
        mesh.update_faces(keep)
        mesh.remove_unreferenced_vertices()
    if len(mesh.faces) == 0:
        raise MeshDataError("mesh is degenerate: every triangle has zero area")
    extents = mesh.extents
    if extents.min() <= 1e-9 * extents.max():
        raise MeshDataError(
            "mesh is degenerate: it is flat (zero thickness), so it encloses no volume"
        )
    verts = np.asarray(mesh.vertices, dtype=float)
    tri = np.asarray(mesh.faces, dtype=np.int64)
    boundary, non_manifold, same_dir = edge_stats(tri)
    closed = boundary == 0 and non_manifold == 0
    flags: list[str] = []
    if same_dir:
        if closed:
            tri, flipped, orientable = make_winding_consistent(tri)
            if orientable:
                repairs.append(f"winding was inconsistent: flipped {flipped} triangles")
            else:
                closed = False
                flags.append("mesh is not orientable (like a Moebius strip): " + OPEN_MEANING)
        else:
            flags.append(
                "winding is inconsistent and was not repaired because the mesh is open "
                "(inside and outside are ambiguous); surface normals are unreliable"
            )
    if closed:
        tri, inverted = _orient_outward(verts, tri)
        if inverted:
            repairs.append(f"{inverted} shell(s) had inward-facing normals and were inverted")
    if boundary:
        flags.append(f"open mesh ({boundary} boundary edges): " + OPEN_MEANING)
    if non_manifold:
        flags.append(
            f"non-manifold mesh ({non_manifold} edges shared by more than two triangles): "
            + OPEN_MEANING
        )
    for text in repairs:
        log.info("mesh repaired: %s", text)
    check = MeshCheck(
        faces=len(tri), vertices=len(verts), boundary_edges=boundary,
        non_manifold_edges=non_manifold, closed=closed, repairs=tuple(repairs),
        flags=tuple(flags), chord_tolerance_m=chord_tolerance_m,
    )
    return PartMesh(vertices=verts, faces=tri, check=check, unit=unit)
