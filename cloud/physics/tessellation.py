"""How far a tessellated surface may lie from the smooth surface it approximates.

A mesh of a curved part is a polyhedron inscribed in the true surface; its
volume, centre of mass and inertia differ from the CAD part's by the thin
shell between the two. This module estimates, per triangle, the largest gap
δ between the triangle and the smooth surface through its corners, from the
surface curvature (fitted per face from normals averaged across smooth
edges), and turns it into error bounds for mass properties.

Assumption (stated with every result): curved regions are tessellated with
less than ``feature_angle`` between neighbouring facets, so sharper edges
are true CAD edges, not tessellation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.physics.geometry import CHUNK, edges

__all__ = ["DEFAULT_FEATURE_ANGLE_DEG", "TessellationBound", "face_deviation", "mass_error_bound"]

DEFAULT_FEATURE_ANGLE_DEG = 30.0
_SAFETY = 1.25  # the curvature fit is an estimate; widen the bound a little


@dataclass(frozen=True)
class TessellationBound:
    """Estimated bounds on mass-property errors caused by the tessellation (absolute values)."""

    max_deviation_m: float
    volume_m3: float
    com_m: float
    inertia_per_density_m5: float
    feature_angle_deg: float = DEFAULT_FEATURE_ANGLE_DEG


def face_deviation(vertices: np.ndarray, faces: np.ndarray,
                   feature_angle_deg: float = DEFAULT_FEATURE_ANGLE_DEG) -> np.ndarray:
    """Estimated largest distance (m) between each triangle and the smooth surface it stands for.

    Across each smooth edge the facet normals turn by θ; a triangle of height
    h across that edge, standing on a circle that turns by θ over h, sags by
    θh/8 (the circle-chord sagitta). Summing over a triangle's smooth edges
    covers doubly curved surfaces (spheres, tori) as well as cylinders and cones.
    """
    normals = np.empty((len(faces), 3))
    double_area = np.empty(len(faces))
    for at in range(0, len(faces), CHUNK):  # a block at a time: no copy of every triangle
        tri = vertices[faces[at:at + CHUNK]]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        double_area[at:at + CHUNK] = np.linalg.norm(cross, axis=1)
        normals[at:at + CHUNK] = cross / np.maximum(double_area[at:at + CHUNK], 1e-300)[:, None]
    found = edges(faces)
    h1, h2 = found.h1, found.h2
    f1, f2 = h1 // 3, h2 // 3
    corners = faces.ravel()
    length = np.linalg.norm(vertices[corners[f1 * 3 + (h1 % 3 + 1) % 3]] - vertices[corners[h1]], axis=1)
    cos_t = np.clip(np.einsum("ij,ij->i", normals[f1], normals[f2]), -1.0, 1.0)
    theta = np.arccos(np.abs(cos_t))  # winding-independent
    smooth = theta < np.radians(feature_angle_deg)
    ht1 = double_area[f1] / np.maximum(length, 1e-300)
    ht2 = double_area[f2] / np.maximum(length, 1e-300)
    # θ·h/8 is the sagitta of a triangle of height h on a circle turning by θ over h;
    # the smaller height is used so a long flat triangle beside a small curved one
    # (a tangent blend) is not charged with curvature it does not have.
    sag = np.where(smooth, theta * np.minimum(ht1, ht2) / 8.0, 0.0)
    delta = np.bincount(f1, weights=sag, minlength=len(faces))
    delta += np.bincount(f2, weights=sag, minlength=len(faces))
    return _SAFETY * delta


def mass_error_bound(vertices: np.ndarray, faces: np.ndarray, com: np.ndarray,
                     feature_angle_deg: float = DEFAULT_FEATURE_ANGLE_DEG) -> TessellationBound:
    """Bounds on |ΔV|, |Δc| and each |ΔI| component (per unit density) from the per-face gaps.

    The shell between a triangle and the surface is at most δ_f thick over the
    triangle's area A_f; its volume, first and second moments bound the errors.
    """
    delta = face_deviation(vertices, faces, feature_angle_deg)
    area, reach, signed = np.empty(len(faces)), np.empty(len(faces)), np.empty(len(faces))
    for at in range(0, len(faces), CHUNK):  # a block at a time: no copy of every triangle
        tri = vertices[faces[at:at + CHUNK]]
        area[at:at + CHUNK] = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        reach[at:at + CHUNK] = np.linalg.norm(tri - com, axis=2).max(axis=1)
        signed[at:at + CHUNK] = np.einsum("ij,ij->i", tri[:, 0] - com, np.cross(tri[:, 1] - com, tri[:, 2] - com))
    shell = delta * area
    reach += delta
    vol = abs(float(signed.sum() / 6.0))
    return TessellationBound(
        max_deviation_m=float(delta.max(initial=0.0)),
        volume_m3=float(shell.sum()),
        com_m=float((shell * reach).sum() / max(vol, 1e-300)),
        inertia_per_density_m5=float((shell * reach**2).sum()),
        feature_angle_deg=feature_angle_deg,
    )
