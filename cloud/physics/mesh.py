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
    CHUNK,
    Edges,
    edges,
    face_components,
    make_winding_consistent,
    signed_volumes,
    winding_number,
)
from cloud.physics.mesh_estimate import is_text
from cloud.physics.mesh_faults import explain
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
    def volume_m3(self) -> float:
        """The enclosed volume, m³ (for a closed mesh; positive with outward normals), summed a block of
        triangles at a time."""
        return float(signed_volumes(self.vertices, self.faces, np.zeros(len(self.faces), dtype=np.intp))[0])

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
    if head.startswith(b"solid") and (b"facet" in data[:4096].lower() or is_text(data[:4096])):
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


_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def _binary_stl_corners(data: bytes) -> np.ndarray | None:
    """The corners of a well-formed binary STL as one (3F, 3) float32 array (face i is rows 3i..3i+2);
    None for anything else, which the general reader handles (and explains)."""
    if len(data) < 84 or is_text(data[:4096]):
        return None
    (count,) = struct.unpack("<I", data[80:84])
    if count == 0 or len(data) != 84 + _STL_RECORD.itemsize * count:
        return None
    records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=84)
    return np.ascontiguousarray(records["corners"]).reshape(-1, 3)


def _parse(data: bytes, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices and faces of mesh bytes; faces None for a binary STL, whose face i is corners 3i..3i+2."""
    if fmt == "stl":
        corners = _binary_stl_corners(data)
        if corners is not None:
            return corners, None
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
    # The reader's own text ("'y'", "not enough values to unpack") means nothing to an engineer:
    # the message says what in the file breaks its format.
    except Exception as exc:  # noqa: BLE001
        log.debug("the %s reader refused the data: %r", fmt, exc)
        raise MeshDataError(f"could not read the {fmt.upper()} data: {explain(data, fmt)}") from exc
    if not isinstance(loaded, trimesh.Trimesh):
        found = "only points" if isinstance(loaded, trimesh.PointCloud) else "only lines or curves"
        raise MeshDataError(f"the {fmt.upper()} data holds no triangles ({found}): {explain(data, fmt)}")
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
        float32 = not is_text(data[:4096])
    vertices, faces = _parse(data, fmt)
    verts, tri, reach = _joined(vertices, faces, unit, limits, float32=float32)
    del vertices, faces  # a binary STL's corners: not needed once joined
    mesh = _validated(verts, tri, unit, None, reach)
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


def _refuse_bad_arrays(vertices: np.ndarray, faces: np.ndarray | None, limits: MeshLimits) -> None:
    if vertices.ndim != 2 or vertices.shape[1:] != (3,):
        raise MeshDataError(f"vertices must be an (N, 3) array (got shape {vertices.shape})")
    if (faces is not None and faces.size == 0) or len(vertices) == 0:
        raise MeshDataError("mesh is empty: it has no triangles")
    if faces is not None and (faces.ndim != 2 or faces.shape[1:] != (3,)):
        raise MeshDataError(f"faces must be triangles, an (N, 3) array (got shape {faces.shape})")
    n_faces = len(vertices) // 3 if faces is None else len(faces)
    if n_faces == 0 or len(vertices) == 0:
        raise MeshDataError("mesh is empty: it has no triangles")
    if n_faces > limits.max_faces:
        raise MeshTooLargeError(f"mesh has {n_faces:,} triangles; the limit is {limits.max_faces:,}")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MeshDataError(
            f"{int(bad.sum())} vertices have NaN or infinite coordinates (first: vertex {first})"
        )
    if faces is not None and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise MeshDataError(f"face indices must be 0..{len(vertices) - 1} (got {faces.min()}..{faces.max()})")


# Equal positions are joined on a grid of 10 nm (in metres), as trimesh's merge_vertices does.
_MERGE_GRID_PER_M = 10**8
_LENGTH_TOL = 1e-8  # trimesh's tol.merge: an edge shorter than this gives its triangle no height
_HASH = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)


def _group_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal rows of an (n, 3) array of 4- or 8-byte values: (first row of each group, group of
    each row). Rows are hashed to one word and sorted; every row is then checked against its group's
    first, and a clash of hashes falls back to a full hash, then to sorting the rows themselves."""
    bits = rows.view(np.uint32 if rows.dtype.itemsize == 4 else np.uint64)
    index_bits = max(len(rows) - 1, 1).bit_length()
    for packed in (index_bits <= 24, False):
        first, group = _hash_groups(bits, index_bits if packed else 0)
        rep = first[group]
        if all(np.array_equal(bits[rep, k], bits[:, k]) for k in range(3)):
            return first, group
    _, first, group = np.unique(bits, axis=0, return_index=True, return_inverse=True)
    return first, group.ravel()


def _hash_groups(bits: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by a 64-bit hash; with ``index_bits``, the hash's top bits and the row index share one
    word and a plain sort (far faster than an index sort) does the grouping."""
    key = np.zeros(len(bits), dtype=np.uint64)
    for k in range(3):
        word = bits[:, k].astype(np.uint64)
        word *= _HASH[k]
        word ^= word >> np.uint64(29)
        key += word
    del word
    if index_bits:
        key >>= np.uint64(index_bits)
        key <<= np.uint64(index_bits)
        key |= np.arange(len(bits), dtype=np.uint64)
        key.sort()
        order = (key & np.uint64((1 << index_bits) - 1)).astype(np.int64)
        key >>= np.uint64(index_bits)
    else:
        order = np.argsort(key)
        key = key[order]
    new = np.empty(len(key), dtype=bool)
    new[:1] = True
    np.not_equal(key[1:], key[:-1], out=new[1:])
    del key
    starts = np.flatnonzero(new)
    first = np.minimum.reduceat(order, starts) if len(starts) else starts
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    return first, group


def _merge_vertices(vertices: np.ndarray, faces: np.ndarray | None, scale: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Vertices in metres (``vertices`` × ``scale``) with equal positions joined, and the faces on them.

    The same result as trimesh's ``merge_vertices`` (positions equal on a 10 nm grid are one vertex,
    kept at its first occurrence, in order of first occurrence; unreferenced vertices dropped), without
    its copies: bit-identical corners (most of an STL) are joined first, the grid is applied to the rest.
    ``faces`` None: face i is vertices 3i..3i+2 (a binary STL).
    """
    if faces is None:
        used = None
        rows = vertices
    else:
        referenced = np.zeros(len(vertices), dtype=bool)
        referenced[faces] = True
        used = np.flatnonzero(referenced) if not referenced.all() else None
        rows = vertices if used is None else vertices[used]
    first, same = _group_rows(np.ascontiguousarray(rows))
    metres = rows[first].astype(np.float64) * scale
    grid = np.round(metres * _MERGE_GRID_PER_M).astype(np.int64)
    del metres
    near_first, near = _group_rows(grid)
    del grid
    # the first occurrence of each joined group, then the groups in order of first occurrence
    group_first = np.full(len(near_first), len(rows), dtype=np.int64)
    np.minimum.at(group_first, near, first)
    order = np.argsort(group_first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_index = rank[near][same]
    del same
    kept = group_first[order]
    if used is not None:
        kept = used[kept]
    merged = vertices[kept].astype(np.float64) * scale
    if faces is None:
        return merged, new_index.reshape(-1, 3)
    lookup = np.zeros(len(vertices), dtype=np.int64)
    lookup[np.arange(len(vertices)) if used is None else used] = new_index
    return merged, lookup[faces]


def _orient_outward(vertices: np.ndarray, faces: np.ndarray, found: Edges) -> tuple[np.ndarray, int]:
    """Invert shells with negative volume unless they lie inside another shell (cavities)."""
    comp = face_components(faces, found)
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


def _diagonal(vertices: np.ndarray) -> float:
    """The bounding box diagonal (trimesh's ``scale``: 1 when it is near 0)."""
    scale = float((np.ptp(vertices, axis=0) ** 2).sum() ** 0.5)
    return scale if scale >= 1e-13 else 1.0


def _nondegenerate(vertices: np.ndarray, faces: np.ndarray, height: float) -> np.ndarray:
    """Faces whose two heights (over the edges from corner 0) exceed ``height``; as trimesh's
    ``nondegenerate_faces``, a block of faces at a time."""
    keep = np.empty(len(faces), dtype=bool)
    for at in range(0, len(faces), CHUNK):
        tri = vertices[faces[at:at + CHUNK]]
        edge = tri[:, 1:, :] - tri[:, :2, :]
        double_area = np.sqrt((np.cross(edge[:, 0], edge[:, 1]) ** 2).sum(axis=1)) / 2.0 * 2
        ok = np.ones(len(tri), dtype=bool)
        for corner in (1, 2):
            side = tri[:, corner] - tri[:, 0]
            length = (side**2).sum(axis=1) ** 0.5
            long = length > _LENGTH_TOL
            box = np.zeros(len(tri))
            box[long] = double_area[long] / length[long]
            ok &= box > height
        keep[at:at + CHUNK] = ok
    return keep


def _drop_faces(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The faces in ``keep`` and the vertices they use (in their order)."""
    faces = faces[keep]
    used = np.zeros(len(vertices), dtype=bool)
    used[faces] = True
    index = np.zeros(len(vertices), dtype=np.int64)
    index[used] = np.arange(int(used.sum()))
    return vertices[used], index[faces]


def build_part_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    unit: LengthUnit = "mm",
    limits: MeshLimits | None = None,
    *,
    chord_tolerance_m: float | None = None,
) -> PartMesh:
    """Validate raw arrays (coordinates in ``unit``) into a PartMesh in metres."""
    verts, tri, reach = _joined(vertices, np.asarray(faces), unit, limits or MeshLimits(), float32=False)
    return _validated(verts, tri, unit, chord_tolerance_m, reach)


Reach = tuple[float, float] | None  # a float32 file's largest |coordinate| and its spacing there, metres


def _joined(vertices: np.ndarray, faces: np.ndarray | None, unit: LengthUnit, limits: MeshLimits,
            *, float32: bool) -> tuple[np.ndarray, np.ndarray, Reach]:
    """Raw arrays checked and their equal positions joined, in metres; ``faces`` None: face i is vertices
    3i..3i+2 (a binary STL's corners). ``float32``: the file stores float32 coordinates, whose reach and
    spacing are returned (file coordinates, before any repair)."""
    if not (isinstance(vertices, np.ndarray) and vertices.dtype in (np.float32, np.float64)):
        vertices = np.asarray(vertices, dtype=float)
    if faces is not None and faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise MeshDataError("face indices must be integers")
    _refuse_bad_arrays(vertices, faces, limits)
    reach = None
    if float32:
        largest = float(np.abs(vertices).max())
        reach = (largest * METRES_PER[unit], float(np.spacing(np.float32(largest))) * METRES_PER[unit])
    verts, tri = _merge_vertices(vertices, faces, METRES_PER[unit])  # STL stores every corner separately
    return verts, tri, reach


def _validated(verts: np.ndarray, tri: np.ndarray, unit: LengthUnit, chord_tolerance_m: float | None,
               reach: Reach) -> PartMesh:
    """Joined arrays (metres) with degenerate and duplicate triangles removed, winding repaired, checked."""
    repairs: list[str] = []
    keep = _nondegenerate(verts, tri, 1e-12 * max(_diagonal(verts), 1e-300))
    first = np.zeros(len(tri), dtype=bool)
    first[_group_rows(np.sort(tri, axis=1))[0]] = True  # one of each set of triangles on the same corners
    keep &= first
    del first
    if not keep.all():
        repairs.append(f"removed {int((~keep).sum())} degenerate or duplicate triangles")
        verts, tri = _drop_faces(verts, tri, keep)
    if len(tri) == 0:
        raise MeshDataError("mesh is degenerate: every triangle has zero area")
    extents = np.ptp(verts, axis=0)
    if extents.min() <= 1e-9 * extents.max():
        raise MeshDataError(
            "mesh is degenerate: it is flat (zero thickness), so it encloses no volume"
        )
    found = edges(tri)
    boundary, non_manifold, same_dir = found.boundary, found.non_manifold, found.same_direction
    closed = boundary == 0 and non_manifold == 0
    flags: list[str] = []
    if same_dir:
        if closed:
            tri, flipped, orientable = make_winding_consistent(tri, found)
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
        tri, inverted = _orient_outward(verts, tri, found)
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
        float32_reach_m=None if reach is None else reach[0],
        float32_precision_m=None if reach is None else reach[1],
    )
    return PartMesh(vertices=verts, faces=tri, check=check, unit=unit)
