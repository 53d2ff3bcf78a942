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




def grid_plate(n: int, size_mm: float, thick_mm: float) -> PartMesh:
    """A plate size × size × thick (mm) whose top face (z = 0) is an n × n grid of squares, 2n² triangles.

    The body lies below z = 0; its walls are fans from the bottom corners, its bottom two triangles.
    """
    s = np.linspace(0.0, size_mm, n + 1)
    gx, gy = np.meshgrid(s, s, indexing="ij")
    top = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    idx = np.arange(gx.size).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = [np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)]
    base = len(top)
    corners = np.array([[0, 0, -thick_mm], [size_mm, 0, -thick_mm], [size_mm, size_mm, -thick_mm],
                        [0, size_mm, -thick_mm]])
    faces.append(np.array([[base, base + 2, base + 1], [base, base + 3, base + 2]]))
    half = n // 2
    for k, rim in enumerate([idx[:, 0], idx[-1, :], idx[::-1, -1], idx[0, ::-1]]):  # anticlockwise from +z
        b0, b1 = base + k, base + (k + 1) % 4
        corner = np.where(np.arange(n) < half, b0, b1)
        faces.append(np.stack([rim[1:], rim[:-1], corner], axis=1))
        faces.append(np.array([[rim[half], b0, b1]]))
    return build_part_mesh(np.concatenate([top, corners]), np.concatenate(faces), "mm")
