"""Mass properties of parts and assemblies: volume, mass, centre of mass, inertia, surface area.

Integrals are exact for the polyhedron (divergence theorem); the difference to
the smooth CAD part is the tessellation error, reported with every result as
a bound (see ``tessellation``). Open meshes are refused: their "volume" is
not defined, and a silently wrong number is worse than none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from cloud.physics.errors import OpenMeshError
from cloud.physics.geometry import CHUNK
from cloud.physics.mesh import PartMesh
from cloud.physics.tessellation import TessellationBound, mass_error_bound

__all__ = ["MassProperties", "combine", "part_mass_properties"]


@dataclass(frozen=True)
class MassProperties:
    """Mass properties in SI, in one frame (the part frame or the world frame).

    ``inertia_com`` is the inertia tensor about the centre of mass with axes
    parallel to the frame's axes (kg·m²). ``bound`` holds the tessellation
    error bounds: ``volume_m3``, ``com_m``, ``inertia_kgm2`` (per tensor component).
    """

    volume_m3: float
    mass_kg: float
    com_m: np.ndarray
    inertia_com: np.ndarray
    surface_area_m2: float
    bound_volume_m3: float
    bound_com_m: float
    bound_inertia_kgm2: float
    max_deviation_m: float

    @property
    def density_kg_m3(self) -> float:
        return self.mass_kg / self.volume_m3 if self.volume_m3 else 0.0

    def principal(self) -> tuple[np.ndarray, np.ndarray]:
        """Principal moments (ascending, kg·m²) and axes (columns, right-handed)."""
        moments, axes = np.linalg.eigh(self.inertia_com)
        if np.linalg.det(axes) < 0:
            axes[:, 2] *= -1.0
        return moments, axes

    def inertia_about(self, frame: np.ndarray) -> np.ndarray:
        """Inertia tensor about the origin of ``frame`` (4×4, metres), in that frame's axes."""
        rot, origin = frame[:3, :3], frame[:3, 3]
        d = self.com_m - origin
        shifted = self.inertia_com + self.mass_kg * (d @ d * np.eye(3) - np.outer(d, d))
        return rot.T @ shifted @ rot

    def transformed(self, pose: np.ndarray) -> MassProperties:
        """The same body seen in another frame: ``pose`` maps this frame into it (4×4, metres)."""
        rot = pose[:3, :3]
        return replace(self, com_m=rot @ self.com_m + pose[:3, 3],
                       inertia_com=rot @ self.inertia_com @ rot.T)


def _bound_fields(bound: TessellationBound, density: float) -> dict[str, float]:
    return {
        "bound_volume_m3": bound.volume_m3,
        "bound_com_m": bound.com_m,
        "bound_inertia_kgm2": bound.inertia_per_density_m5 * density,
        "max_deviation_m": bound.max_deviation_m,
    }


_DIVISORS = np.array([6, 24, 24, 24, 60, 60, 60, 120, 120, 120], dtype=np.float64)


def _integrals(vertices: np.ndarray, faces: np.ndarray, density: float
               ) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Volume, centre of mass, inertia about it and surface area of a closed mesh: trimesh's
    ``triangles.mass_properties`` (the same terms, summed the same way, so the same numbers) worked out
    a block of triangles at a time instead of on a copy of every triangle and a dozen temporaries."""
    integral = np.empty((10, len(faces)))
    areas = np.empty(len(faces))
    for at in range(0, len(faces), CHUNK):
        t = vertices[faces[at:at + CHUNK]]
        block = integral[:, at:at + CHUNK]
        edge = t[:, 1:, :] - t[:, :2, :]
        crosses = np.cross(edge[:, 0], edge[:, 1])
        a, b, c = t[:, 0, :], t[:, 1, :], t[:, 2, :]
        f1 = a + b + c
        f2 = a**2 + b**2 + a * b + c * f1
        f3 = a**3 + a**2 * b + a * b**2 + b**3 + c * f2
        g = [f2 + (corner + f1) * corner for corner in (a, b, c)]
        block[0] = crosses[:, 0] * f1[:, 0]
        block[1:4] = (crosses * f2).T
        block[4:7] = (crosses * f3).T
        for i in range(3):
            j = (i + 1) % 3
            block[i + 7] = crosses[:, i] * (a[:, j] * g[0][:, i] + b[:, j] * g[1][:, i] + c[:, j] * g[2][:, i])
        areas[at:at + CHUNK] = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    integrated = integral.sum(axis=1) / _DIVISORS
    del integral
    volume = float(integrated[0])
    com = integrated[1:4] / volume
    inertia = np.zeros((3, 3))
    inertia[0, 0] = integrated[5] + integrated[6] - (volume * (com[[1, 2]] ** 2).sum())
    inertia[1, 1] = integrated[4] + integrated[6] - (volume * (com[[0, 2]] ** 2).sum())
    inertia[2, 2] = integrated[4] + integrated[5] - (volume * (com[[0, 1]] ** 2).sum())
    inertia[0, 1] = -(integrated[7] - (volume * np.prod(com[[0, 1]])))
    inertia[1, 2] = -(integrated[8] - (volume * np.prod(com[[1, 2]])))
    inertia[0, 2] = -(integrated[9] - (volume * np.prod(com[[0, 2]])))
    inertia[2, 0], inertia[2, 1], inertia[1, 0] = inertia[0, 2], inertia[1, 2], inertia[0, 1]
    return volume, com, inertia * density, float(areas.sum())


def part_mass_properties(mesh: PartMesh, density_kg_m3: float, name: str = "") -> MassProperties:
    """Mass properties of one closed mesh, in its own frame. OpenMeshError if it is not closed."""
    if not mesh.closed:
        raise OpenMeshError(
            "mass properties need a closed mesh; " + "; ".join(mesh.check.flags), path=name
        )
    if density_kg_m3 <= 0 or not np.isfinite(density_kg_m3):
        raise OpenMeshError(f"density must be positive (got {density_kg_m3})", path=name)
    # integrate about the vertex mean: keeps the sums well conditioned far from the origin
    centre = mesh.vertices.mean(axis=0)
    volume, com_local, inertia, area = _integrals(mesh.vertices - centre, mesh.faces, density_kg_m3)
    if volume <= 0:
        raise OpenMeshError(f"mesh encloses no volume ({volume:.3g} m³)", path=name)
    com = com_local + centre
    bound = mass_error_bound(mesh.vertices - com, mesh.faces, np.zeros(3))
    return MassProperties(
        volume_m3=volume, mass_kg=volume * density_kg_m3, com_m=com,
        inertia_com=0.5 * (inertia + inertia.T), surface_area_m2=area,
        **_bound_fields(bound, density_kg_m3),
    )


def combine(items: Sequence[MassProperties]) -> MassProperties:
    """Mass properties of several bodies given in one common frame."""
    if not items:
        raise ValueError("nothing to combine")
    mass = sum(i.mass_kg for i in items)
    com: np.ndarray = np.sum([i.mass_kg * i.com_m for i in items], axis=0) / mass
    inertia = np.zeros((3, 3))
    bound_inertia = 0.0
    bound_com = sum(i.mass_kg * i.bound_com_m for i in items) / mass
    for i in items:
        d = i.com_m - com
        inertia += i.inertia_com + i.mass_kg * (d @ d * np.eye(3) - np.outer(d, d))
        # a part's mass error moves its share of the parallel-axis term too
        bound_inertia += i.bound_inertia_kgm2 + i.density_kg_m3 * i.bound_volume_m3 * (d @ d)
    return MassProperties(
        volume_m3=sum(i.volume_m3 for i in items), mass_kg=mass, com_m=com,
        inertia_com=inertia, surface_area_m2=sum(i.surface_area_m2 for i in items),
        bound_volume_m3=sum(i.bound_volume_m3 for i in items), bound_com_m=float(bound_com),
        bound_inertia_kgm2=bound_inertia,
        max_deviation_m=max(i.max_deviation_m for i in items),
    )
