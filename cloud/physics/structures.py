"""Structures of one part's mesh that the collision checks build on first use, and boolean intersections.

``_Geometry`` holds a mesh's fcl BVH, hull support points, boxes, convex description and manifold solid,
shared by every part instance with the same geometry; ``_Boolean`` is an intersection solid from
manifold3d with its mesh.
"""

from __future__ import annotations

from functools import cached_property

import fcl
import manifold3d
import numpy as np
from scipy.spatial import ConvexHull, QhullError

from cloud.physics.convex import ConvexShape, convex_shape
from cloud.physics.mesh import PartMesh
from cloud.physics.polytope import Polytope

_HULL_ABOVE = 4096  # vertices; smaller meshes use every vertex for their AABB (qhull costs more)
# ... and so do larger ones: qhull on a finely tessellated curved part, most of whose vertices are on its
# hull, takes seconds (6 s for a 1.31 M-triangle sphere), a placement through every vertex milliseconds.
_HULL_BELOW = 100_000


class _Boolean(Polytope):
    """An intersection from manifold3d: any shape, with its mesh."""

    def __init__(self, volume: float, area: float, vertices: np.ndarray, faces: np.ndarray,
                 centroid: np.ndarray | None) -> None:
        super().__init__(volume, area, vertices, centroid)
        self.__dict__["mesh"] = (vertices, faces)


class _Geometry:
    """Structures of one mesh, shared by every part instance with the same geometry; built on first use."""

    def __init__(self, mesh: PartMesh) -> None:
        self.mesh = mesh

    @cached_property
    def bvh(self) -> fcl.BVHModel:
        model = fcl.BVHModel()
        model.beginModel(len(self.mesh.faces), len(self.mesh.vertices))
        model.addSubModel(self.mesh.vertices, self.mesh.faces.astype(np.int32))
        model.endModel()
        return model

    @cached_property
    def support(self) -> np.ndarray:
        """Points whose transformed extent is the part's AABB: the convex hull vertices."""
        v = self.mesh.vertices
        if len(v) <= _HULL_ABOVE or len(v) >= _HULL_BELOW:
            return v
        try:
            return v[ConvexHull(v).vertices]
        except QhullError:
            return v

    @cached_property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mesh.vertices.min(axis=0), self.mesh.vertices.max(axis=0)

    @cached_property
    def face_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        tri = self.mesh.triangles
        return tri.min(axis=1), tri.max(axis=1)

    @cached_property
    def support_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.support.T)

    @cached_property
    def convex(self) -> ConvexShape | None:
        """The convex description, if the mesh is a closed convex polytope (tested once)."""
        return convex_shape(self.mesh.vertices, self.mesh.faces) if self.mesh.closed else None

    @cached_property
    def solid(self) -> manifold3d.Manifold | None:
        if not self.mesh.closed:
            return None
        solid = manifold3d.Manifold(manifold3d.Mesh64(
            vert_properties=np.ascontiguousarray(self.mesh.vertices, dtype=np.float64),
            tri_verts=np.ascontiguousarray(self.mesh.faces, dtype=np.uint64)))
        return solid if solid.status() == manifold3d.Error.NoError else None


def _centroid(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = verts[faces] - verts.mean(axis=0)
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    if abs(vol.sum()) < 1e-300:
        return verts.mean(axis=0)
    return (vol[:, None] * tri.sum(axis=1)).sum(axis=0) / (4.0 * vol.sum()) + verts.mean(axis=0)
