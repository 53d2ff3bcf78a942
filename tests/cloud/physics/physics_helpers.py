"""Helpers for the physics tests: parts and assemblies built from trimesh primitives."""

from __future__ import annotations

import base64

import numpy as np
import trimesh

from cloud.physics.assembly import Assembly, AssemblySpec, Part
from cloud.physics.materials import get_material
from cloud.physics.mesh import PartMesh, build_part_mesh


def part(name: str, mesh: PartMesh, pose: np.ndarray, material: str = "steel-s235",
         fixed: bool = False) -> Part:
    mat = get_material(material)
    return Part(name, mesh, pose, mat, mat.density, mesh.unit, fixed)


def assembly(parts: list[Part], mates: list[dict] | None = None) -> Assembly:
    spec = AssemblySpec.model_validate({
        "parts": [{"name": p.name, "mesh": {"format": "stl", "data_base64": ""},
                   "material": p.material.id, "fixed": p.fixed} for p in parts],
        "mates": mates or []})
    return Assembly(spec, parts)


def mesh_of(tm: trimesh.Trimesh, unit: str = "mm") -> PartMesh:
    return build_part_mesh(tm.vertices, tm.faces, unit)


def inline(tm: trimesh.Trimesh, fmt: str = "stl") -> dict:
    data = tm.export(file_type=fmt)
    data = data.encode() if isinstance(data, str) else data
    return {"format": fmt, "data_base64": base64.b64encode(data).decode()}


