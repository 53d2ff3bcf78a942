"""Convex polytopes from points on their faces: volume, centroid, area and a surface mesh.

Input is, for a batch of polytopes, points on each one's boundary (every
vertex among them, repeats allowed) and which point lies on which face
plane. A face is the convex polygon of the points on its plane: sorted by
angle about their mean they go round it once. Volume, centroid and area then
follow from the divergence theorem with a fan of triangles per face and a
tetrahedron from each triangle to a reference point, all in a fixed number
of numpy operations for the whole batch.

The vector areas of a closed surface sum to zero: a batch member whose faces
fail that test (a face missing or counted twice) is returned as None, so the
caller can use another method.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

__all__ = ["EMPTY", "Polytope", "assemble"]

_CLOSURE = 1e-9  # largest |Σ vector areas| / Σ areas accepted as a closed surface


class Polytope:
    """A convex solid in the frame it was computed in.

    ``vertices`` are points on its surface that include every vertex (with
    repeats); ``mesh`` triangulates the surface when asked (for pictures).
    """

    def __init__(self, volume: float, area: float, vertices: np.ndarray,
                 centroid: np.ndarray | None, fan: tuple[np.ndarray, ...] | None = None) -> None:
        self.volume, self.area, self.vertices, self.centroid = volume, area, vertices, centroid
        self._fan = fan

    @cached_property
    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """(vertices, faces) of a triangle soup covering the surface."""
        if self._fan is None:
            return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
        c, x, y, signed = self._fan
        real = signed > 0  # drop the zero-area fan triangles of repeated points
        tri = np.concatenate([c[real], x[real], y[real]])
        m = len(tri) // 3
        return tri, np.arange(3 * m).reshape(3, m).T


EMPTY = Polytope(0.0, 0.0, np.zeros((0, 3)), None)


def assemble(pts: np.ndarray, poly_of_pt: np.ndarray, point: np.ndarray, plane: np.ndarray,
             normals: np.ndarray, n_poly: int, eps: np.ndarray) -> list[Polytope | None]:
    """Polytopes ``0..n_poly-1`` from points ``pts`` (of polytope ``poly_of_pt``) and incidences.

    Point ``point[i]`` lies on the plane with outward unit normal ``normals[plane[i]]``.
    ``eps[k]`` is the thickness below which polytope k counts as flat (returned
    as ``EMPTY``, volume 0).
    """
    if not len(plane):
        return [EMPTY] * n_poly
    n_planes = len(normals)
    x = np.take(pts, point, axis=0)
    count = np.bincount(plane, minlength=n_planes)
    sums = np.stack([np.bincount(plane, x[:, k], n_planes) for k in range(3)], axis=1)
    centre = sums / np.maximum(count, 1)[:, None]
    # angles about the centre in an in-plane basis (u, w) with u × w = n: counter-clockwise
    n = np.take(normals, plane, axis=0)
    u = _cross(n, np.where((np.abs(n[:, 0]) < 0.9)[:, None], _X, _Y))
    w = _cross(n, u)
    rel = x - np.take(centre, plane, axis=0)
    order = np.argsort(plane * 8.0 + _pseudo_angle(np.einsum("ij,ij->i", rel, u),
                                                   np.einsum("ij,ij->i", rel, w)))
    plane, point, x, n = plane[order], point[order], x[order], n[order]
    first = (np.cumsum(count) - count)[plane]
    nxt = point[first + (np.arange(len(plane)) - first + 1) % count[plane]]
    c, y = np.take(centre, plane, axis=0), np.take(pts, nxt, axis=0)
    vec = 0.5 * _cross(x - c, y - c)  # vector area of each fan triangle
    signed = np.einsum("ij,ij->i", vec, n)
    poly = poly_of_pt[point]
    area = np.bincount(poly, signed, n_poly)
    closure = np.sqrt(sum(np.bincount(poly, vec[:, k], n_poly) ** 2 for k in range(3)))
    # reference point: the mean of each polytope's points (inside it)
    n_pts = np.maximum(np.bincount(poly_of_pt, minlength=n_poly), 1)[:, None]
    origin = np.stack([np.bincount(poly_of_pt, pts[:, k], n_poly) for k in range(3)], axis=1) / n_pts
    o = np.take(origin, poly, axis=0)
    vol = np.einsum("ij,ij->i", c - o, vec) / 3.0  # tetrahedra (o, c, x, y)
    volume = np.bincount(poly, vol, n_poly)
    weighted = vol[:, None] * (o + c + x + y)
    moment = np.stack([np.bincount(poly, weighted[:, k], n_poly) for k in range(3)], axis=1) / 4.0
    bounds = np.searchsorted(poly, np.arange(n_poly + 1))  # triangles are grouped by polytope
    out: list[Polytope | None] = []
    for k in range(n_poly):
        a, v = float(area[k]), float(volume[k])
        if bounds[k + 1] - bounds[k] < 4 or v <= eps[k] * max(a, 0.0):
            out.append(EMPTY)  # empty, or flat: a contact with no shared volume
        elif a <= 0 or closure[k] > _CLOSURE * a:
            out.append(None)  # not a closed surface: a face was missed
        else:
            sl = slice(bounds[k], bounds[k + 1])
            out.append(Polytope(v, a, x[sl], moment[k] / v, (c[sl], x[sl], y[sl], signed[sl])))
    return out


_X, _Y = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def _pseudo_angle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A number in [0, 4) that increases with the angle of (x, y), like atan2 but cheaper."""
    p = y / np.maximum(np.abs(x) + np.abs(y), 1e-300)
    return np.where(x >= 0, p + 1.0, 3.0 - p)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product (np.cross costs ~4× more on small arrays)."""
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
                     a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)
