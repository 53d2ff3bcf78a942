"""The assembly: parts (mesh + pose + material + unit), mates, and the JSON file format.

File format (``format: "twinedge-assembly/1"``)::

    {"format": "twinedge-assembly/1", "name": "cell-3 gripper", "unit": "mm",
     "parts": [{"name": "base", "mesh": "meshes/base.stl", "unit": "mm",
                "material": "aluminium-6082-t6", "fixed": true,
                "pose": {"translation": [0, 0, 0], "rotation_deg": [0, 0, 90]}}],
     "mates": [...]}

Pose translations and mate distances are in the assembly ``unit``; mesh and
feature coordinates in each part's ``unit`` (default mm). A STEP file states
its own unit: a part's ``unit`` left out takes it, one that contradicts it is
refused. Formats without units are flagged when a part's size or mass is
implausible in its unit, and float32 formats when their coordinate spacing is
coarser than a tenth of the touching tolerance. ``rotation_deg`` is applied about
the fixed X, then Y, then Z axes; ``matrix`` (4×4) may be given instead.
A mesh is a path relative to the JSON file (never absolute, never outside its
folder) or inline: ``{"format": "stl", "data_base64": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator
from scipy.spatial.transform import Rotation

from cloud.physics.errors import (
    AssemblyError,
    MeshFormatError,
    MeshTooLargeError,
    PhysicsError,
    Problem,
    UnitMismatchError,
)
from cloud.physics.materials import Material, get_material
from cloud.physics.mates import MateSpec, unknown_parts
from cloud.physics.mesh import FORMATS, MeshLimits, PartMesh, format_from_name, load_mesh_bytes
from cloud.physics.mesh_estimate import (
    ESTIMATE_HEAD_BYTES,
    TriangleEstimate,
    estimate_triangles,
    obj_face_lines,
)
from cloud.physics.units import (
    DEFAULT_TOLERANCE_M,
    METRES_PER,
    UNIT_WORDS,
    LengthUnit,
    format_length,
    format_mass,
)
from shared.configbase import StrictModel as _Strict
from shared.validation import validation_problems

__all__ = [
    "ASSEMBLY_FORMAT",
    "Assembly",
    "AssemblySpec",
    "InlineMesh",
    "Part",
    "PartSpec",
    "PoseSpec",
    "load_assembly",
    "inline_triangles",
    "load_assembly_file",
    "parse_assembly",
    "precision_flags",
    "unit_flags",
]

ASSEMBLY_FORMAT = "twinedge-assembly/1"
# A part of a format without units is flagged when, read in its unit, it is outside these.
MIN_DIAGONAL_M = 1e-4  # 0.1 mm across
MAX_DIAGONAL_M = 100.0
MIN_MASS_KG = 1e-6  # 1 mg
# A float32 file is flagged when its coordinate spacing is coarser than this part of the tolerance.
PRECISION_FRACTION = 0.1
# Pose translations beyond this (in the assembly unit: 1 km in mm, 1,000 km in m) are refused: doubles
# there still resolve 1e-10 m, and farther out distances overflow (a 1e308 mm pose made a 500).
MAX_TRANSLATION = 1e6
MAX_DENSITY_KG_M3 = 25_000.0  # above osmium's 22,590: a larger density is a typo or a unit slip


class PoseSpec(_Strict):
    """A rigid pose: ``matrix`` (4×4) or ``translation`` + ``rotation_deg`` (fixed-axis X, Y, Z)."""

    matrix: list[list[float]] | None = Field(default=
        None, description="4×4 homogeneous transform; translation in the assembly unit"
    )
    translation: tuple[float, float, float] | None = Field(default=
        None, description="position of the part frame, in the assembly unit"
    )
    rotation_deg: tuple[float, float, float] | None = Field(default=
        None, description="rotations about the fixed X, Y, Z axes, degrees"
    )

    @field_validator("matrix")
    @classmethod
    def _matrix(cls, rows: list[list[float]] | None) -> list[list[float]] | None:
        """A 4×4 rigid transform; a field validator, so that its problems carry the path ``….matrix``."""
        if rows is None:
            return rows
        lengths = [len(r) for r in rows]
        if lengths != [4, 4, 4, 4]:
            raise ValueError("matrix must be 4×4, 4 rows of 4 numbers (got "
                             + (f"{len(rows)} rows of {', '.join(map(str, lengths))} numbers" if rows else "no rows")
                             + ")")
        m = np.asarray(rows, dtype=float)
        if not np.isfinite(m).all():
            raise ValueError("matrix has NaN or infinite entries")
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-9):
            raise ValueError("matrix last row must be [0, 0, 0, 1]")
        r = m[:3, :3]
        if not np.allclose(r.T @ r, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
            raise ValueError("matrix rotation part must be a proper rotation (orthonormal, det +1)")
        return rows

    @model_validator(mode="after")
    def _check(self) -> PoseSpec:
        if self.matrix is not None and (self.translation is not None or self.rotation_deg is not None):
            raise ValueError("give either 'matrix' or 'translation'/'rotation_deg', not both")
        for v in (self.translation, self.rotation_deg):
            if v is not None and not np.isfinite(v).all():
                raise ValueError("pose values must be finite")
        moved = self.translation if self.matrix is None else [row[3] for row in self.matrix[:3]]
        if moved is not None and max(abs(x) for x in moved) > MAX_TRANSLATION:
            raise ValueError(f"a pose translation must be within ±{MAX_TRANSLATION:,.0f} in the assembly unit "
                             f"(got {max(moved, key=abs):g})")
        return self

    def to_matrix(self, unit: LengthUnit) -> np.ndarray:
        """The pose as a 4×4 transform with translation in metres."""
        if self.matrix is not None:
            m = np.asarray(self.matrix, dtype=float).copy()
            u, _, vt = np.linalg.svd(m[:3, :3])  # re-orthonormalise rounding noise
            m[:3, :3] = u @ vt
        else:
            m = np.eye(4)
            if self.rotation_deg is not None:
                m[:3, :3] = Rotation.from_euler("xyz", self.rotation_deg, degrees=True).as_matrix()
            if self.translation is not None:
                m[:3, 3] = self.translation
        m[:3, 3] *= METRES_PER[unit]
        return m


class InlineMesh(_Strict):
    """Mesh bytes carried inside the JSON (base64)."""

    format: str = Field(max_length=32, description=(
        "stl, obj, ply, glb, gltf, step or stp; another is answered 415 (unknown mesh format)"))
    data_base64: str = Field(description="the mesh file, base64-encoded")


class PartSpec(_Strict):
    """One part of an assembly."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="unique part name")
    mesh: str | InlineMesh = Field(description="path relative to the assembly file, or inline mesh")
    unit: LengthUnit | None = Field(default=None, description=(
        "unit of the mesh and feature coordinates; default mm, and for STEP the unit the file declares "
        "(a different one is refused)"))
    material: str = Field(description="id from the materials table, e.g. 'aluminium-6061-t6'")
    density_kg_m3: float | None = Field(default=None, description=(
        f"overrides the material density, kg/m³; above 0 and at most {MAX_DENSITY_KG_M3:,.0f}"))
    pose: PoseSpec = Field(default_factory=PoseSpec)
    fixed: bool = Field(default=False, description="grounded: the mate solver does not move it")

    @field_validator("density_kg_m3")
    @classmethod
    def _density(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= MAX_DENSITY_KG_M3:
            raise ValueError(f"density must be above 0 and at most {MAX_DENSITY_KG_M3:,.0f} kg/m³ (the densest "
                             f"element, osmium, is about 22,600 kg/m³); got {value:g} kg/m³")
        return value


class AssemblySpec(_Strict):
    """An assembly file (see the module docstring)."""

    format: Literal["twinedge-assembly/1"] = "twinedge-assembly/1"
    name: str = Field(default="assembly", max_length=200)
    unit: LengthUnit = Field(default="mm", description="unit of pose translations and mate distances")
    parts: list[PartSpec] = Field(min_length=1, max_length=2000)
    mates: list[MateSpec] = Field(default_factory=list, max_length=5000)


@dataclass(eq=False)
class Part:
    """A loaded part: validated mesh (metres, own frame), pose (4×4, metres) and material."""

    name: str
    mesh: PartMesh
    pose: np.ndarray
    material: Material
    density_kg_m3: float
    unit: LengthUnit
    fixed: bool = False


@dataclass(eq=False)
class Assembly:
    """A loaded assembly. ``version`` changes whenever poses change (keys caches)."""

    spec: AssemblySpec
    parts: list[Part]
    warnings: list[str] = field(default_factory=list)

    @property
    def unit(self) -> LengthUnit:
        return self.spec.unit

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise AssemblyError(f"no part named {name!r}")

    def warnings_at(self, tolerance_m: float) -> list[str]:
        """The assembly's warnings, and those a touching tolerance finer than the default adds (float32 files)."""
        out = list(self.warnings)
        if tolerance_m < DEFAULT_TOLERANCE_M:
            for p in self.parts:
                if not precision_flags(p.mesh, DEFAULT_TOLERANCE_M):
                    out += [f"part {p.name}: {t}" for t in precision_flags(p.mesh, tolerance_m)]
        return out

    def with_poses(self, poses: dict[str, np.ndarray]) -> Assembly:
        """A copy whose parts have the given poses (4×4, metres); meshes are shared."""
        parts = [
            Part(p.name, p.mesh, np.asarray(poses.get(p.name, p.pose), dtype=float), p.material,
                 p.density_kg_m3, p.unit, p.fixed)
            for p in self.parts
        ]
        return Assembly(self.spec, parts, list(self.warnings))


def parse_assembly(data: bytes | str | dict) -> AssemblySpec:
    """Validate assembly JSON (bytes, text or an already-parsed dict); AssemblyError lists every problem."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AssemblyError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AssemblyError("an assembly must be a JSON object")
    try:
        spec = AssemblySpec.model_validate(data)
    except ValidationError as exc:
        raise AssemblyError(validation_problems(exc, AssemblySpec)) from None
    _check_mates(spec)
    return spec


def _check_mates(spec: AssemblySpec) -> None:
    """Part names are unique (else 422 at the repeat, ``parts[1].name``) and every part a mate names is one
    of the parts (else 422 with each mate's path, ``mates[0].a.part``).

    Not a model validator: pydantic gives a model validator's error the model's path, and the path
    of an upload's unknown part was lost."""
    first: dict[str, int] = {}
    problems = [Problem(f"parts[{i}].name", f"part name {p.name!r} is already used by parts[{first[p.name]}]")
                for i, p in enumerate(spec.parts) if first.setdefault(p.name, i) != i]
    problems += unknown_parts(spec.mates, {p.name for p in spec.parts})
    if problems:
        raise AssemblyError(problems)


def _read_mesh_file(base: Path, rel: str, limits: MeshLimits) -> tuple[bytes, str]:
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not rel:
        raise AssemblyError(f"mesh path {rel!r} must be relative and stay inside the assembly folder")
    path = base / Path(*pure.parts)
    fmt = format_from_name(path.name)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise MeshTooLargeError(f"{rel}: {size:,} bytes; the limit is {limits.max_bytes:,}")
        return path.read_bytes(), fmt
    except FileNotFoundError:
        raise AssemblyError(f"mesh file {rel!r} not found next to the assembly file") from None
    except OSError as exc:
        raise AssemblyError(f"cannot read mesh file {rel!r}: {exc.strerror}") from None


def _mesh_bytes(spec: PartSpec, base: Path | None, limits: MeshLimits) -> tuple[bytes, str]:
    if isinstance(spec.mesh, InlineMesh):
        fmt = spec.mesh.format.lower().lstrip(".")
        if fmt not in (*FORMATS, "stp"):
            raise MeshFormatError(f"unknown mesh format {spec.mesh.format!r}; give one of "
                                  f"{', '.join(FORMATS)} or stp", "format")
        if len(spec.mesh.data_base64) > limits.max_bytes * 4 // 3 + 4:
            raise MeshTooLargeError(f"inline mesh is over the limit of {limits.max_bytes:,} bytes")
        try:
            return base64.b64decode(spec.mesh.data_base64, validate=True), spec.mesh.format
        except (binascii.Error, ValueError):
            raise AssemblyError("data_base64 is not valid base64") from None
    if base is None:
        raise AssemblyError("uploaded assemblies must carry their meshes inline (data_base64)")
    return _read_mesh_file(base, spec.mesh, limits)


_B64_HEAD = (ESTIMATE_HEAD_BYTES + 2) // 3 * 4  # base64 characters of the first 64 KiB
_B64_CHUNK = 4 * 1024 * 1024  # base64 characters decoded at a time while counting an OBJ's faces


def inline_triangles(mesh: InlineMesh) -> TriangleEstimate | None:
    """About how many triangles an inline mesh holds, read from its header (or size) without decoding the
    whole of it; None when that cannot be told (see ``estimate_triangles``)."""
    text = mesh.data_base64
    size = len(text) // 4 * 3 - len(text[-2:]) + len(text[-2:].rstrip("="))
    fmt = mesh.format.lower().lstrip(".")
    try:
        head = base64.b64decode(text[:_B64_HEAD], validate=True)
        lines = obj_face_lines(base64.b64decode(text[at:at + _B64_CHUNK], validate=True)
                               for at in range(0, len(text), _B64_CHUNK)) if fmt == "obj" else None
    except (binascii.Error, ValueError):
        return None  # the loader says what is wrong with it
    return estimate_triangles(head, size, fmt, lines)


def load_assembly(spec: AssemblySpec, base_dir: Path | None = None,
                  limits: MeshLimits | None = None) -> Assembly:
    """Load and validate every part's mesh; all part problems are reported together."""
    _check_mates(spec)
    limits = limits or MeshLimits()
    parts: list[Part] = []
    problems: list[Problem] = []
    kinds: set[type[PhysicsError]] = set()
    warnings: list[str] = []
    for i, ps in enumerate(spec.parts):
        key = "mesh"
        try:
            data, fmt = _mesh_bytes(ps, base_dir, limits)
            mesh = load_mesh_bytes(data, fmt, ps.unit, limits)
            key = "material"
            material = get_material(ps.material)
        except UnitMismatchError as exc:
            kinds.add(AssemblyError)
            problems += [Problem(f"parts[{i}].unit", f"part {ps.name}: {p.message}") for p in exc.problems]
            continue
        except PhysicsError as exc:
            kinds.add(type(exc))
            problems += [Problem(f"parts[{i}].{key}" + (f".{p.path}" if p.path else ""),
                                 f"part {ps.name}: {p.message}") for p in exc.problems]
            continue
        density = ps.density_kg_m3 or material.density
        found = unit_flags(mesh, density) + precision_flags(mesh, DEFAULT_TOLERANCE_M)
        if found:
            mesh = replace(mesh, check=replace(mesh.check, flags=mesh.check.flags + tuple(found)))
        warnings += [f"part {ps.name}: {t}" for t in mesh.check.repairs + mesh.check.flags]
        parts.append(Part(ps.name, mesh, ps.pose.to_matrix(spec.unit), material, density,
                          mesh.unit, ps.fixed))
    if problems:
        # One kind of problem keeps its kind (a part over the size limit is 413, not 422).
        raise (kinds.pop() if len(kinds) == 1 else AssemblyError)(problems)
    return Assembly(_without_mesh_data(spec), parts, warnings)


def _without_mesh_data(spec: AssemblySpec) -> AssemblySpec:
    """The spec a loaded assembly keeps: its inline meshes' base64 text dropped (up to 1.33 times the mesh
    bytes each, for as long as the assembly stays loaded); the meshes are loaded, and an upload as sent
    stays in the database."""
    if not any(isinstance(p.mesh, InlineMesh) and p.mesh.data_base64 for p in spec.parts):
        return spec
    parts = [p.model_copy(update={"mesh": p.mesh.model_copy(update={"data_base64": ""})})
             if isinstance(p.mesh, InlineMesh) else p for p in spec.parts]
    return spec.model_copy(update={"parts": parts})


def precision_flags(mesh: PartMesh, tolerance_m: float) -> list[str]:
    """Why a float32 file (binary STL, GLB) cannot resolve gaps near ``tolerance_m``, if it cannot."""
    check = mesh.check
    if check.float32_precision_m is None or check.float32_reach_m is None:
        return []
    if check.float32_precision_m <= PRECISION_FRACTION * tolerance_m:
        return []
    kind = "STL" if check.source_format == "stl" else (check.source_format or "mesh").upper()
    return [f"the {kind}'s float32 coordinates reach {format_length(check.float32_reach_m)} from the origin; "
            f"their precision is {format_length(check.float32_precision_m)}, coarser than a tenth of the "
            f"{format_length(tolerance_m)} touching tolerance, so gaps and overlaps of that size are lost "
            "(a gap under it may read 0); export the part with its origin near it and place it with its pose"]


def unit_flags(mesh: PartMesh, density_kg_m3: float) -> list[str]:
    """For a format without units: a warning when the part's size or mass is implausible in its unit."""
    if mesh.check.source_format in (None, "step"):
        return []
    diagonal = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
    mass = density_kg_m3 * abs(mesh.volume_m3) if mesh.closed else None
    if diagonal < MIN_DIAGONAL_M or (mass is not None and mass < MIN_MASS_KG):
        what = "small"
    elif diagonal > MAX_DIAGONAL_M:
        what = "large"
    else:
        return []
    size = f"{format_length(diagonal)} across" + ("" if mass is None else f", {format_mass(mass)}")
    native = diagonal / METRES_PER[mesh.unit]
    fits = [f'"unit": "{u}" ({format_length(native * METRES_PER[u])} across)' for u in METRES_PER
            if u != mesh.unit and MIN_DIAGONAL_M <= native * METRES_PER[u] <= MAX_DIAGONAL_M
            and (what == "large") == (METRES_PER[u] < METRES_PER[mesh.unit])]
    hint = f"; if the file is in another unit, set {' or '.join(fits)}" if fits else ""
    return [f"{size} with coordinates read as {UNIT_WORDS[mesh.unit]}: implausibly {what} "
            f"(the {mesh.check.source_format.upper()} file states no unit){hint}"]


def load_assembly_file(path: str | Path, limits: MeshLimits | None = None,
                       max_json_bytes: int = 16 * 1024 * 1024) -> Assembly:
    """Read an assembly JSON file and the meshes it references."""
    path = Path(path)
    try:
        if path.stat().st_size > max_json_bytes:
            raise MeshTooLargeError(f"{path.name} is over {max_json_bytes:,} bytes")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AssemblyError(f"assembly file {str(path)!r} not found") from None
    except OSError as exc:
        raise AssemblyError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    return load_assembly(parse_assembly(raw), path.parent, limits)
