"""Convex polytopes from points on their faces: volume, centroid, area and a surface mesh.

Input is, for a batch of polytopes, points on each one's boundary (every
vertex among them, repeats allowed) and which point lies on which face
plane. A face is the convex polygon of the points on its plane: sorted by
angle about their mean they go round it once. Each face's area and area
centroid follow from a fan of triangles in the face's own 2-D coordinates,
and volume and centroid from the divergence theorem (a cone from a
reference point over each face), all in a fixed number of numpy operations
for the whole batch; per point only 1-D arithmetic runs, 3-D vectors only
per face.

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
        centre, pts, face, start, end, signed = self._fan  # fan triangle (centre of face, start, end)
        real = signed > 0  # drop the zero-area fan triangles of repeated points
        tri = np.concatenate([np.take(centre, face[real], axis=1).T,
                              np.take(pts, start[real], axis=1).T, np.take(pts, end[real], axis=1).T])
        m = len(tri) // 3
        return tri, np.arange(3 * m).reshape(3, m).T


EMPTY = Polytope(0.0, 0.0, np.zeros((0, 3)), None)


def assemble(pts: np.ndarray, poly_of_pt: np.ndarray, point: np.ndarray, plane: np.ndarray,
             normals: np.ndarray, n_poly: int, eps: np.ndarray) -> list[Polytope | None]:
    """Polytopes ``0..n_poly-1`` from points ``pts`` (3, P) (of polytope ``poly_of_pt``) and incidences.

    Point ``pts[:, point[i]]`` lies on the plane with outward unit normal
    ``normals[:, plane[i]]`` (normals are (3, H); the planes of one polytope
    have consecutive ids, in polytope order). ``eps[k]`` is the thickness
    below which polytope k counts as flat (returned as ``EMPTY``, volume 0).
    """
    if not len(plane):
        return [EMPTY] * n_poly
    used = np.zeros(normals.shape[1], dtype=bool)
    used[plane] = True
    plane = (np.cumsum(used) - 1)[plane]  # renumber the planes that carry points 0..h-1
    n = np.compress(used, normals, axis=1)
    h = n.shape[1]
    x = np.take(pts, point, axis=1)  # np.take: several times faster than x[:, index]
    count = np.bincount(plane, minlength=h)
    centre = np.stack([np.bincount(plane, x[k], h) for k in range(3)]) / np.maximum(count, 1)
    # each face's 2-D coordinates about its centre: orthonormal (u, w) with u × w = n
    u = _cross(n, np.where(np.abs(n[0]) < 0.9, _X, _Y))
    u /= np.sqrt(_dot(u, u))
    w = _cross(n, u)
    pu = _dot(x, np.take(u, plane, axis=1)) - _dot(centre, u)[plane]
    pw = _dot(x, np.take(w, plane, axis=1)) - _dot(centre, w)[plane]
    # by face, then counter-clockwise; the key is ≥ 0, so its bits sort as int64 (a faster sort)
    order = np.argsort((plane * 8.0 + _pseudo_angle(pu, pw)).view(np.int64), kind="stable")
    plane, point, pu, pw = plane[order], point[order], pu[order], pw[order]
    first = (np.cumsum(count) - count)[plane]
    nxt = first + (np.arange(len(plane)) - first + 1) % count[plane]
    # fan triangles (centre, point, next point): twice the area, and area × centroid in 2-D
    signed = 0.5 * (pu * pw[nxt] - pw * pu[nxt])
    area_f = np.bincount(plane, signed, h)
    mu = np.bincount(plane, signed * (pu + pu[nxt]), h) / 3.0
    mw = np.bincount(plane, signed * (pw + pw[nxt]), h) / 3.0
    poly_f = poly_of_pt[point[(np.cumsum(count) - count)]]  # the polytope of each face
    # reference point: the mean of each polytope's points (inside it)
    n_pts = np.maximum(np.bincount(poly_of_pt, minlength=n_poly), 1)
    origin = np.stack([np.bincount(poly_of_pt, pts[k], n_poly) for k in range(3)]) / n_pts
    o = np.take(origin, poly_f, axis=1)
    height = _dot(n, centre - o)  # of the cone from o over each face
    vol_f = area_f * height / 3.0
    # area × centroid of each face, relative to o; the cone's centroid is 3/4 of the way to it
    g = area_f * (centre - o) + u * mu + w * mw
    moment = o * vol_f + 0.25 * height * g
    volume = np.bincount(poly_f, vol_f, n_poly)
    area = np.bincount(poly_f, area_f, n_poly)
    vec = area_f * n
    closure = np.sqrt(sum(np.bincount(poly_f, vec[k], n_poly) ** 2 for k in range(3)))
    centroid = np.stack([np.bincount(poly_f, moment[k], n_poly) for k in range(3)], axis=1)
    bounds = np.searchsorted(poly_of_pt[point], np.arange(n_poly + 1))  # grouped by polytope
    out: list[Polytope | None] = []
    for k in range(n_poly):
        a, v = float(area[k]), float(volume[k])
        if bounds[k + 1] - bounds[k] < 4 or v <= eps[k] * max(a, 0.0):
            out.append(EMPTY)  # empty, or flat: a contact with no shared volume
        elif a <= 0 or closure[k] > _CLOSURE * a:
            out.append(None)  # not a closed surface: a face was missed
        else:
            sl = slice(bounds[k], bounds[k + 1])
            fan = (centre, pts, plane[sl], point[sl], point[nxt[sl]], signed[sl])
            out.append(Polytope(v, a, np.take(pts, point[sl], axis=1).T, centroid[k] / v, fan))
    return out


_X, _Y = np.array([[1.0], [0.0], [0.0]]), np.array([[0.0], [1.0], [0.0]])


def _pseudo_angle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A number in [0, 4) that increases with the angle of (x, y), like atan2 but cheaper."""
    p = y / np.maximum(np.abs(x) + np.abs(y), 1e-300)
    return np.where(x >= 0, p + 1.0, 3.0 - p)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise cross product of (3, n) arrays (np.cross costs ~4× more on small arrays)."""
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise dot product of (3, n) arrays."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
