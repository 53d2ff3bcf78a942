"""How deep an open part's surface reaches into a closed part: flush contact or interference, without a volume.

Two closed parts that cross are told apart by their shared volume (its mean thickness against the
tolerance). An open mesh has no inside, so no shared volume: a sheet lying flush on a face and a sheet
pushed through a part both only "cross". What still holds is the open surface itself: the pair
interferes when some point of the open part's surface lies deeper inside the closed part than the
tolerance, and touches when all of it stays within the tolerance of the closed part's surface.

The surface is sampled on the faces near the closed part: a barycentric grid on each face (corners,
edge points and interior points), the points where the two surfaces cross and, per face, the centre of
those crossing points (the middle of a pin's section through a sheet). Each point's depth is exact:
for a convex closed part, the distance inside its nearest face plane; otherwise, for points the
winding number puts inside, the distance to its surface. A penetration narrower than the grid's
spacing on a large face, away from every crossing point, can be missed.
"""

from __future__ import annotations

import fcl
import numpy as np

from cloud.physics.budget import check_time
from cloud.physics.contact import Structures, crossing_rows, inverse, moved, near_faces, winding_numbers

__all__ = ["surface_depth"]

_GRID = 4  # subdivisions of each face edge for the grid of samples (15 points a face)
_GRID_FACES = 2048  # faces above which only corners and centres are sampled
_NOISE_M = 1e-12  # depths below this (rounding of flush faces) read 0
_MAX_PRODUCTS = 5e7  # sample points × closed triangles for the winding numbers of a non-convex part


def _grid(n: int) -> np.ndarray:
    """Barycentric weights (k, 3) of a triangular grid with ``n`` steps an edge."""
    rows = [(i, j, n - i - j) for i in range(n + 1) for j in range(n + 1 - i)]
    return np.array(rows, dtype=float) / n


def surface_depth(open_geom: Structures, closed_geom: Structures, bvh: fcl.BVHModel, rel: np.ndarray,
                  pairs: np.ndarray) -> float:
    """The deepest sampled point (m) of the open part's surface inside the closed part (0: none inside).

    ``rel`` is the closed part's pose in the open part's frame, ``pairs`` the crossing triangle pairs
    (open, closed) and ``bvh`` the closed part's fcl model in its own frame.
    """
    check_time("measuring how deep an open part's surface reaches")
    faces, tri, _, _ = near_faces(open_geom, closed_geom, rel, 0.0)
    if not len(faces):
        return 0.0
    back = inverse(rel)  # the open part's points into the closed part's frame
    weights = _grid(_GRID if len(faces) <= _GRID_FACES else 1)
    samples = [np.einsum("kc,fcx->fkx", weights, tri).reshape(-1, 3), tri.mean(axis=1)]
    if len(pairs):
        cross, row = crossing_rows(open_geom.mesh.triangles[pairs[:, 0]],
                                   moved(closed_geom.mesh.triangles[pairs[:, 1]], rel))
        if len(cross):  # and per open face, the centre of the points where the surfaces cross on it
            ids, at = np.unique(pairs[row, 0], return_inverse=True)
            centre = np.zeros((len(ids), 3))
            np.add.at(centre, at, cross)
            samples += [cross, centre / np.bincount(at)[:, None]]
    points = moved(np.concatenate(samples), back)
    depth = _depth(points, closed_geom, bvh)
    return depth if depth > _NOISE_M else 0.0


def _depth(points: np.ndarray, closed: Structures, bvh: fcl.BVHModel) -> float:
    """The largest depth of ``points`` (the closed part's frame) inside the closed part."""
    convex = closed.convex
    if convex is not None:
        inside = -(points @ convex.planes[:, :3].T + convex.planes[:, 3]).max(axis=1)
        return max(float(inside.max()), 0.0)
    triangles = closed.mesh.triangles
    cap = max(256, int(_MAX_PRODUCTS // max(len(triangles), 1)))
    if len(points) > cap:
        points = points[np.linspace(0, len(points) - 1, cap).astype(int)]
    deep = points[winding_numbers(points, triangles) > 0.5]
    found = 0.0
    model = fcl.CollisionObject(bvh, fcl.Transform())
    probe = fcl.Sphere(0.0)
    for p in deep:
        check_time("measuring how deep an open part's surface reaches")
        result = fcl.DistanceResult()
        d = fcl.distance(model, fcl.CollisionObject(probe, fcl.Transform(p)), fcl.DistanceRequest(), result)
        found = max(found, float(d))
    return found
