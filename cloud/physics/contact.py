"""Where two parts meet: the triangles within a tolerance of each other and points on both surfaces.

Exact closest features between triangles, vectorised with numpy: for every
candidate triangle pair (their boxes within the tolerance), the six
vertex–triangle and nine edge–edge closest point pairs. For two triangles that
do not cross, the smallest of these fifteen is their distance; every feature
closer than the tolerance gives a point on each surface. For coincident faces
these points are the corners of the shared polygon (vertices of one face
inside the other and edge crossings), so their box is the contact region.
Triangles that cross are found by fcl (``CollisionWorld.crossing_faces``);
this module adds the ones that come within the tolerance without crossing.

Also here: winding numbers for many points at once (inside or outside a
closed mesh), the inside test of a whole part, and a spread-out subset of at
most 64 points for the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cloud.physics.box_pairs import box_pairs
from cloud.physics.budget import check_time
from cloud.physics.convex import ConvexShape
from cloud.physics.geometry import face_components
from cloud.physics.mesh import PartMesh

__all__ = [
    "NO_CONTACT",
    "NO_FACES",
    "Contact",
    "NearFeatures",
    "Structures",
    "crossing_points",
    "crossing_rows",
    "inside",
    "inside_faces",
    "inverse",
    "moved",
    "near_faces",
    "near_features",
    "spread",
    "winding_numbers",
]

MAX_POINTS = 64  # points per surface in an answer
_CHUNK = 1 << 18  # candidate pairs (or point × triangle products) handled per numpy pass
_MAX_CANDIDATES = 1 << 23  # triangle pairs tested at most; beyond, the nearest are kept
_BY_FEATURE_ABOVE = 4096  # triangles near the other part (on both) above which features are tested once each
_MAX_PIECES = 16  # connected pieces of a non-convex part's faces tested for lying inside the other


class Structures(Protocol):
    """What the contact functions read of a part's geometry (``structures._Geometry``)."""

    @property
    def mesh(self) -> PartMesh: ...

    @property
    def box(self) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def face_boxes(self) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def convex(self) -> ConvexShape | None: ...


@dataclass(frozen=True)
class Contact:
    """A pair's contact or overlap on each part: points on its surface (world, m) and its triangles."""

    points_a: np.ndarray  # (k, 3), k <= MAX_POINTS
    points_b: np.ndarray
    faces_a: np.ndarray  # indices into the part's mesh faces
    faces_b: np.ndarray


NO_FACES = np.zeros(0, dtype=np.int64)
NO_CONTACT = Contact(np.zeros((0, 3)), np.zeros((0, 3)), NO_FACES, NO_FACES)


@dataclass(frozen=True)
class NearFeatures:
    """Triangles of A and B within the tolerance of the other part, and contact points on each."""

    faces_a: np.ndarray  # indices into A's faces
    faces_b: np.ndarray
    points_a: np.ndarray  # (k, 3) on A's surface, each within the tolerance of B's
    points_b: np.ndarray  # (k, 3) the matching points on B's surface
    distance: float  # smallest feature distance found (inf when none)


def _boxes(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return tri.min(axis=1), tri.max(axis=1)


def _candidates(ta: np.ndarray, tb: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ia, ib) of triangle pairs whose boxes come within ``tol`` of each other, sorted.

    Many triangles go through ``box_pairs`` (a grid of cells), so the work grows with the
    triangles and the pairs found, not with their product (finely meshed faces lying flush).
    """
    lo_a, hi_a = _boxes(ta)
    lo_b, hi_b = _boxes(tb)
    near_a = np.flatnonzero(np.all((lo_a <= hi_b.max(axis=0, initial=-np.inf) + tol)
                                   & (hi_a >= lo_b.min(axis=0, initial=np.inf) - tol), axis=1))
    near_b = np.flatnonzero(np.all((lo_b <= hi_a[near_a].max(axis=0, initial=-np.inf) + tol)
                                   & (hi_b >= lo_a[near_a].min(axis=0, initial=np.inf) - tol), axis=1))
    if not len(near_a) or not len(near_b):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    la, ha, lb, hb = lo_a[near_a], hi_a[near_a], lo_b[near_b], hi_b[near_b]
    if len(near_a) * len(near_b) <= _CHUNK:  # few: compare all
        r, c = np.nonzero(np.all((la[:, None] <= hb[None] + tol) & (ha[:, None] >= lb[None] - tol), axis=2))
        return near_a[r], near_b[c]
    ia, ib = box_pairs(la, ha, lb, hb, tol)
    return near_a[ia], near_b[ib]


def _point_triangle(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Closest point of each triangle ``tri`` (n, 3, 3) to each point ``p`` (n, 3) (Ericson, 5.1.5)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    bp = p - b
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    cp = p - c
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v_in, w_in = vb / denom, vc / denom
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    out = a + v_in[:, None] * ab + w_in[:, None] * ac
    # the regions are tested from the last to the first so the first match wins
    conds = [
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), b + t_bc[:, None] * (c - b)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + t_ac[:, None] * ac),
        ((d6 >= 0) & (d5 <= d6), c),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + t_ab[:, None] * ab),
        ((d3 >= 0) & (d4 <= d3), b),
        ((d1 <= 0) & (d2 <= 0), a),
    ]
    for cond, value in conds:
        out = np.where(cond[:, None], value, out)
    bad = ~np.isfinite(out).all(axis=1)  # a degenerate (zero-area) triangle: its nearest vertex
    if bad.any():
        dist = np.linalg.norm(tri[bad] - p[bad, None], axis=2)
        out[bad] = tri[bad][np.arange(bad.sum()), dist.argmin(axis=1)]
    return out


def _segment_segment(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Closest points of segments p1q1 and p2q2, row by row (Ericson, 5.1.9)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e, f = _dot(d1, d1), _dot(d2, d2), _dot(d2, r)
    c, b = _dot(d1, r), _dot(d1, d2)
    denom = a * e - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > 1e-30 * a * e, np.clip((b * f - c * e) / denom, 0.0, 1.0), 0.0)
        t = np.where(e > 0, (b * s + f) / e, 0.0)
        s = np.where(t < 0, np.where(a > 0, np.clip(-c / a, 0.0, 1.0), 0.0), s)
        s = np.where(t > 1, np.where(a > 0, np.clip((b - c) / a, 0.0, 1.0), 0.0), s)
    t = np.clip(np.nan_to_num(t), 0.0, 1.0)
    s = np.nan_to_num(s)
    return p1 + s[:, None] * d1, p2 + t[:, None] * d2


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


_EDGES = ((0, 1), (1, 2), (2, 0))


def _features(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 15 closest-feature point pairs of each triangle pair: (points on A, points on B), (n, 15, 3)."""
    pa, pb = [], []
    for k in range(3):
        pb.append(_point_triangle(ta[:, k], tb))
        pa.append(ta[:, k])
        pa.append(_point_triangle(tb[:, k], ta))
        pb.append(tb[:, k])
    for i, j in _EDGES:
        for m, n in _EDGES:
            x, y = _segment_segment(ta[:, i], ta[:, j], tb[:, m], tb[:, n])
            pa.append(x)
            pb.append(y)
    a, b = np.stack(pa, axis=1), np.stack(pb, axis=1)
    return a, b, np.linalg.norm(a - b, axis=2)


def near_features(ta: np.ndarray, tb: np.ndarray, tol: float,
                  corners: tuple[np.ndarray, np.ndarray] | None = None) -> NearFeatures:
    """The triangles of A and B within ``tol`` of the other part, with the contact points.

    ``ta`` (Fa, 3, 3) and ``tb`` (Fb, 3, 3) are the two parts' triangles in one frame.
    Triangles that cross without a feature within ``tol`` are not found here.
    ``corners``: the vertex indices of those triangles (Fa, 3) and (Fb, 3). With them,
    when both parts have many triangles near the other (finely meshed faces lying flush),
    each vertex and edge is tested once (``_by_feature``) instead of once per triangle pair
    it belongs to: the same triangles and contact box, each contact point once.
    """
    if corners is not None and min(len(ta), len(tb)) > _BY_FEATURE_ABOVE:
        return _by_feature(ta, tb, corners[0], corners[1], tol)
    ia, ib = _candidates(ta, tb, tol)
    if len(ia) > _MAX_CANDIDATES:  # keep the pairs whose centres are nearest
        gap = np.linalg.norm(ta[ia].mean(axis=1) - tb[ib].mean(axis=1), axis=1)
        keep = np.argpartition(gap, _MAX_CANDIDATES)[:_MAX_CANDIDATES]
        ia, ib = ia[keep], ib[keep]
    fa, fb, qa, qb, best = [], [], [], [], np.inf
    for s in range(0, len(ia), _CHUNK // 16):
        check_time("finding where two parts touch")
        ca, cb = ia[s:s + _CHUNK // 16], ib[s:s + _CHUNK // 16]
        a, b, dist = _features(ta[ca], tb[cb])
        if dist.size:
            best = min(best, float(dist.min()))
        hit = dist <= tol
        pair = hit.any(axis=1)
        fa.append(ca[pair])
        fb.append(cb[pair])
        qa.append(a[hit])
        qb.append(b[hit])
    if not fa:
        empty = np.zeros(0, dtype=np.int64)
        return NearFeatures(empty, empty, np.zeros((0, 3)), np.zeros((0, 3)), best)
    return NearFeatures(np.unique(np.concatenate(fa)), np.unique(np.concatenate(fb)),
                        np.concatenate(qa), np.concatenate(qb), best)


def _by_feature(ta: np.ndarray, tb: np.ndarray, ca: np.ndarray, cb: np.ndarray, tol: float) -> NearFeatures:
    """``near_features`` feature by feature: each vertex of one part against the other's triangles,
    each edge of A against each edge of B, every one once; a triangle is near when one of its
    vertices or edges is, or a vertex of the other part is near it."""
    near_a: list[np.ndarray] = []
    near_b: list[np.ndarray] = []
    qa: list[np.ndarray] = []
    qb: list[np.ndarray] = []
    best = np.inf
    for tx, ty, cx, x_is_a in ((ta, tb, ca, True), (tb, ta, cb, False)):
        vid, first = np.unique(cx.ravel(), return_index=True)
        pts = tx.reshape(-1, 3)[first]
        iv, it = _candidates(pts[:, None, :], ty, tol)
        for s in range(0, len(iv), _CHUNK // 4):
            check_time("finding where two parts touch")
            v, t = iv[s:s + _CHUNK // 4], it[s:s + _CHUNK // 4]
            on_y = _point_triangle(pts[v], ty[t])
            dist = np.linalg.norm(pts[v] - on_y, axis=1)
            best = min(best, float(dist.min(initial=np.inf)))
            hit = dist <= tol
            near_x, near_y = np.flatnonzero(np.isin(cx, vid[v[hit]]).any(axis=1)), t[hit]
            (near_a if x_is_a else near_b).append(near_x)
            (near_b if x_is_a else near_a).append(near_y)
            (qa if x_is_a else qb).append(pts[v[hit]])
            (qb if x_is_a else qa).append(on_y[hit])
    (keys_a, edge_a, seg_a), (keys_b, edge_b, seg_b) = _edges(ta, ca), _edges(tb, cb)
    ja, jb = _candidates(seg_a, seg_b, tol)
    for s in range(0, len(ja), _CHUNK // 4):
        check_time("finding where two parts touch")
        a, b = ja[s:s + _CHUNK // 4], jb[s:s + _CHUNK // 4]
        x, y = _segment_segment(seg_a[a, 0], seg_a[a, 1], seg_b[b, 0], seg_b[b, 1])
        dist = np.linalg.norm(x - y, axis=1)
        best = min(best, float(dist.min(initial=np.inf)))
        hit = dist <= tol
        near_a.append(np.flatnonzero(np.isin(keys_a, edge_a[a[hit]]).any(axis=1)))
        near_b.append(np.flatnonzero(np.isin(keys_b, edge_b[b[hit]]).any(axis=1)))
        qa.append(x[hit])
        qb.append(y[hit])
    if not qa:
        return NearFeatures(NO_FACES, NO_FACES, np.zeros((0, 3)), np.zeros((0, 3)), best)
    return NearFeatures(np.unique(np.concatenate(near_a)), np.unique(np.concatenate(near_b)),
                        np.concatenate(qa), np.concatenate(qb), best)


def _edges(tri: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each triangle's edge keys (F, 3), the distinct edges' keys (E,) and their segments (E, 2, 3)."""
    i, j = np.array(_EDGES).T
    c = corners.astype(np.int64)
    lo, hi = np.minimum(c[:, i], c[:, j]), np.maximum(c[:, i], c[:, j])
    keys = lo * (int(c.max(initial=0)) + 1) + hi
    edge, first = np.unique(keys.ravel(), return_index=True)
    face, k = np.divmod(first, 3)
    return keys, edge, np.stack([tri[face, i[k]], tri[face, j[k]]], axis=1)


def winding_numbers(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Generalized winding number of each point w.r.t. a closed triangle mesh (1 inside, 0 outside).

    Van Oosterom–Strackee solid angles, points in chunks against every triangle.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    out = np.empty(len(pts))
    tx, ty, tz = (np.ascontiguousarray(triangles[:, :, k].T) for k in range(3))  # (3, F) each
    step = max(1, _CHUNK // max(len(triangles), 1))
    for s in range(0, len(pts), step):
        p = pts[s:s + step]
        ax, bx, cx = (tx[m][None] - p[:, 0, None] for m in range(3))
        ay, by, cy = (ty[m][None] - p[:, 1, None] for m in range(3))
        az, bz, cz = (tz[m][None] - p[:, 2, None] for m in range(3))
        la = np.sqrt(ax * ax + ay * ay + az * az)
        lb = np.sqrt(bx * bx + by * by + bz * bz)
        lc = np.sqrt(cx * cx + cy * cy + cz * cz)
        det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        den = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc
               + (bx * cx + by * cy + bz * cz) * la + (cx * ax + cy * ay + cz * az) * lb)
        out[s:s + step] = np.arctan2(det, den).sum(axis=1) / (2.0 * np.pi)
    return out


def crossing_points(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Where the edges of ``ta[k]`` pierce ``tb[k]`` and those of ``tb[k]`` pierce ``ta[k]``: on both surfaces."""
    return crossing_rows(ta, tb)[0]


def crossing_rows(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``crossing_points`` and, for each point, the row k of the triangle pair it comes from."""
    if not len(ta):
        return np.zeros((0, 3)), NO_FACES
    # the six edge sets against their triangles in one pass (same rows, same order as one by one)
    p = np.concatenate([x[:, i] for x in (ta, tb) for i, _ in _EDGES])
    q = np.concatenate([x[:, j] for x in (ta, tb) for _, j in _EDGES])
    tri = np.concatenate([tb, tb, tb, ta, ta, ta])
    hit, ok = _segment_triangle(p, q, tri)
    return hit[ok], np.tile(np.arange(len(ta)), 6)[ok]


def _segment_triangle(p: np.ndarray, q: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where segment pq meets triangle ``tri``, row by row (Möller–Trumbore), and whether it does."""
    a = tri[:, 0]
    d, e1, e2 = q - p, tri[:, 1] - a, tri[:, 2] - a
    h = np.cross(d, e2)
    det = _dot(e1, h)
    scale = np.linalg.norm(d, axis=1) * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = p - a
        u = inv * _dot(s, h)
        qv = np.cross(s, e1)
        v = inv * _dot(d, qv)
        t = inv * _dot(e2, qv)
        ok = (np.abs(det) > 1e-12 * scale) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t >= 0) & (t <= 1)
    return p + np.nan_to_num(t)[:, None] * d, ok


def inside(points: np.ndarray, triangles: np.ndarray) -> bool:
    """Whether points of one part, whose surface does not cross the mesh ``triangles``, lie inside it.

    The median winding number of up to nine points spread over the part decides:
    a point that happens to lie on the other surface gives ½, the others agree.
    """
    pick = points[np.linspace(0, len(points) - 1, min(9, len(points))).astype(int)]
    return bool(np.median(winding_numbers(pick, triangles)) > 0.5)


def spread(points: np.ndarray, k: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``k`` of ``points``, spread over them (farthest-point order from the first)."""
    if len(points) <= k:
        return np.arange(len(points))
    pool = np.arange(0, len(points), max(1, len(points) // 4096))  # sampling on at most ~8k points
    pts = np.ascontiguousarray(points[pool].T)  # (3, n): arithmetic along rows is fast
    chosen = [0]
    dist = _distance(pts, 0)
    for _ in range(k - 1):
        nxt = int(dist.argmax())
        if dist[nxt] == 0:
            break
        chosen.append(nxt)
        np.minimum(dist, _distance(pts, nxt), out=dist)
    return pool[chosen]


def _distance(pts: np.ndarray, k: int) -> np.ndarray:
    """Distance of every point (columns of ``pts``) to point k, rounded as ``np.linalg.norm`` rounds."""
    d = pts - pts[:, k, None]
    d *= d
    out = d[0] + d[1]
    out += d[2]
    return np.sqrt(out, out=out)


def near_faces(gi: Structures, gj: Structures, rel: np.ndarray, margin: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Faces of i and of j whose boxes come within ``margin`` of the other part's box.

    Returns (indices of i's faces, their triangles, indices of j's, their triangles), all in i's frame.
    """
    fa, fb = _near_own(gi, gj, rel, margin), _near_own(gj, gi, inverse(rel), margin)
    return fa, gi.mesh.triangles[fa], fb, moved(gj.mesh.triangles[fb], rel)


def _near_own(gi: Structures, gj: Structures, rel: np.ndarray, margin: float) -> np.ndarray:
    """Faces of i whose boxes come within ``margin`` of j's box (j placed by ``rel`` in i's frame)."""
    lo_j, hi_j = _box_moved(gj.box, rel)  # j's box seen from i
    ai, bi = gi.face_boxes
    return np.flatnonzero(np.all((ai <= hi_j + margin) & (bi >= lo_j - margin), axis=1))


def inside_faces(gi: Structures, gj: Structures, rel: np.ndarray, crossing: np.ndarray,
                 region: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Faces of i (not among ``crossing``) that lie inside part j; ``rel`` is j's pose in i's frame.

    A convex j: each vertex is tested against j's face planes. Otherwise the faces near
    j that do not cross it fall into connected pieces, each wholly inside or outside j,
    and the winding number of three vertices of each piece decides. ``region`` (lo, hi
    in i's frame), a box known to hold the shared volume, spares the convex test every
    face outside it: a face inside j is inside the shared volume too.
    """
    if not gj.mesh.closed:
        return NO_FACES
    fa = _near_own(gi, gj, rel, 0.0)
    convex = gj.convex
    if convex is not None and region is not None:
        lo, hi = gi.face_boxes
        pad = 1e-9 * max(convex.scale, float(np.max(region[1] - region[0])))
        fa = fa[np.all((lo[fa] >= region[0] - pad) & (hi[fa] <= region[1] + pad), axis=1)]
    cand = np.setdiff1d(fa, crossing)
    if not len(cand):
        return NO_FACES
    faces = gi.mesh.faces[cand]
    inv = inverse(rel)
    if convex is not None:
        planes = convex.planes
        used = np.unique(faces)
        local = moved(gi.mesh.vertices[used], inv)
        ok = np.zeros(len(gi.mesh.vertices), dtype=bool)
        ok[used] = np.all(local @ planes[:, :3].T + planes[:, 3] <= 1e-12 * convex.scale, axis=1)
        return cand[ok[faces].all(axis=1)]
    labels = face_components(faces)
    sizes = np.bincount(labels)
    keep = np.zeros(len(cand), dtype=bool)
    for label in np.argsort(-sizes)[:_MAX_PIECES]:
        members = np.flatnonzero(labels == label)
        verts = np.unique(faces[members])
        pick = verts[np.linspace(0, len(verts) - 1, min(3, len(verts))).astype(int)]
        if np.median(winding_numbers(moved(gi.mesh.vertices[pick], inv), gj.mesh.triangles)) > 0.5:
            keep[members] = True
    return cand[keep]


def moved(x: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Points (..., 3) carried by a 4×4 pose."""
    out = x @ pose[:3, :3].T
    out += pose[:3, 3]  # in place: a second large array costs more than the product
    return out


def inverse(pose: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = pose[:3, :3].T
    out[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return out


def _box_moved(box: tuple[np.ndarray, np.ndarray], pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned box around a moved box."""
    lo, hi = box
    centre, half = moved((lo + hi) / 2, pose), np.abs(pose[:3, :3]) @ ((hi - lo) / 2)
    return centre - half, centre + half
