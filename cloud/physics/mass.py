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
import trimesh

from cloud.physics.errors import OpenMeshError
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
    tri = mesh.triangles - centre
    props = trimesh.triangles.mass_properties(tri, density=density_kg_m3)
    volume = float(props.volume)
    if volume <= 0:
        raise OpenMeshError(f"mesh encloses no volume ({volume:.3g} m³)", path=name)
    com_local = np.asarray(props.center_mass, dtype=float)
    com = com_local + centre
    inertia = np.asarray(props.inertia, dtype=float)
    area = float(0.5 * np.linalg.norm(
        np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
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
