"""Convex parts and the exact intersection of two of them: the fast path for interference volumes.

A tessellated part that is convex *is* a convex polytope, so the shared solid
of two such parts is the convex polytope A ∩ B, built here directly:

1. Vertices. Every vertex of A ∩ B is an end of the piece of some edge of A
   that lies inside B, or of some edge of B inside A (a vertex of a convex set
   cannot sit inside a segment of the set). Only feature edges (between faces
   on different planes) are clipped, only those that reach a small region
   known to hold A ∩ B, and only against the other part's faces that meet
   that region.
2. Faces. Each face of A ∩ B lies on a plane of A or of B that carries a
   clipped point; every point is put on every such plane it lies on (within
   1e-12 of the parts' size), and ``polytope.assemble`` builds the face
   polygons, the volume, the centroid and the area (checking that the faces
   close).

A batch of pairs is clipped and assembled together, so per pair only a small
set-up runs in Python. Where the faces do not close (a degenerate case this
misses), the pair is reported as unresolved and the caller uses a boolean.

Convexity is decided once per mesh (``convex_shape``): the mesh is closed and
2-manifold, each face's plane supports every vertex (within 1e-9 of the
part's size), the enclosed volume equals the convex hull's (within 1e-9
relative), and each face lies on one of the hull's planes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from cloud.physics.polytope import EMPTY, Polytope, assemble

__all__ = ["ConvexShape", "convex_shape", "intersect", "intersect_many"]

_REL_TOL = 1e-9  # convexity: planes support every vertex, and volumes agree, to this fraction
_REL_EPS = 1e-12  # on a plane / inside a halfspace, as a fraction of the parts' size
_MAX_CHECK = 5e7  # faces × hull planes above which convexity is not tested (boolean path)


@dataclass(frozen=True, eq=False)
class ConvexShape:
    """A convex part in its own frame: feature edges and outward planes n·x + c ≤ 0."""

    vertices: np.ndarray  # (V, 3)
    vertices_t: np.ndarray  # (3, V), the same, for fast per-axis work
    edges: np.ndarray  # (E, 2) vertex indices of the feature edges
    edge_planes: np.ndarray  # (E, 2) the planes on either side of each edge
    facet_vertices: np.ndarray  # vertices of each plane's face, grouped by plane
    facet_starts: np.ndarray  # (H,) where each plane's group starts in facet_vertices
    normals: np.ndarray  # (H, 3) unit outward normals, one per distinct face plane
    offsets: np.ndarray  # (H,)
    lo: np.ndarray
    hi: np.ndarray
    scale: float  # largest extent, m


def convex_shape(vertices: np.ndarray, faces: np.ndarray) -> ConvexShape | None:
    """The convex description of a closed, outward-oriented mesh, or None if it is not convex."""
    v = np.asarray(vertices, dtype=float)
    faces = np.asarray(faces, dtype=np.int64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    scale = float((hi - lo).max())
    try:
        hull = ConvexHull(v)
    except QhullError:
        return None
    planes = np.unique(hull.equations, axis=0)  # a merged (coplanar) facet repeats its plane
    if len(faces) * max(len(hull.vertices), len(planes)) > _MAX_CHECK:
        return None
    tri = v[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=1)
    if np.any(length <= 0):
        return None
    normal /= length[:, None]
    offset = -np.einsum("ij,ij->i", normal, tri[:, 0])
    tol = _REL_TOL * scale
    # each face plane supports the whole part: no vertex beyond it
    if (v[hull.vertices] @ normal.T + offset).max() > tol:
        return None
    e = tri - tri.mean(axis=(0, 1))
    volume = np.einsum("ij,ij->i", e[:, 0], np.cross(e[:, 1], e[:, 2])).sum() / 6.0
    if abs(volume - hull.volume) > _REL_TOL * hull.volume:
        return None  # e.g. two shells, or a doubly covered surface
    # the hull plane each face lies on
    plane_of = np.argmax(normal @ planes[:, :3].T, axis=1)
    if np.any(np.abs(offset - planes[plane_of, 3]) > tol) or np.any(
            np.einsum("ij,ij->i", normal, planes[plane_of, :3]) < 1.0 - 1e-6):
        return None
    edges, edge_planes = _feature_edges(faces, plane_of)
    if edges is None:
        return None
    incidence = np.unique(np.stack([np.repeat(plane_of, 3), faces.ravel()], axis=1), axis=0)
    starts = np.searchsorted(incidence[:, 0], np.arange(len(planes)))
    return ConvexShape(v, np.ascontiguousarray(v.T), edges, edge_planes, incidence[:, 1], starts,
                       np.ascontiguousarray(planes[:, :3]), np.ascontiguousarray(planes[:, 3]),
                       lo, hi, scale)


def _feature_edges(faces: np.ndarray, plane_of: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Edges between faces on different planes, with those two planes (None if not 2-manifold)."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = np.sort(half, axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, face = key[order], np.repeat(np.arange(len(faces)), 3)[order]
    if len(key) % 2 or np.any(key[0::2] != key[1::2]) or np.all(key[1:-1:2] == key[2::2], axis=1).any():
        return None, np.zeros((0, 2))
    pa, pb = plane_of[face[0::2]], plane_of[face[1::2]]
    feature = pa != pb
    return key[0::2][feature], np.stack([pa[feature], pb[feature]], axis=1)


def intersect(a: ConvexShape, b: ConvexShape, rel: np.ndarray) -> Polytope | None:
    """A ∩ B in A's frame, with B placed by ``rel`` (4×4, B's frame in A's); see ``intersect_many``."""
    return intersect_many([(a, b, rel)])[0]


def intersect_many(items: list[tuple[ConvexShape, ConvexShape, np.ndarray]]) -> list[Polytope | None]:
    """A ∩ B for each (A, B, pose of B in A's frame), in A's frame.

    ``EMPTY`` (volume 0) where the intersection is empty or flat; None where
    its faces could not be assembled (the caller then uses a boolean). The
    pairs are processed together: per pair only a small set-up runs in
    Python; the clipping and the face assembly are a fixed number of numpy
    operations for the whole batch.
    """
    blocks: list[_Block] = []
    normals, offsets, bases, eps = [], [], [0], []
    for p, (a, b, rel) in enumerate(items):
        rot, shift = rel[:3, :3], rel[:3, 3]
        nb = b.normals @ rot.T  # B's planes in A's frame: (R n)·x + (c - (R n)·t) ≤ 0
        cb = b.offsets - nb @ shift
        normals += [a.normals, nb]
        offsets += [a.offsets, cb]
        bases += [bases[-1] + len(a.normals), bases[-1] + len(a.normals) + len(b.normals)]
        eps.append(_REL_EPS * max(a.scale, b.scale))
        b_in_a = rot @ b.vertices_t + shift[:, None]  # (3, V)
        region = _overlap_region(a, b, b_in_a, rot, shift, eps[-1])
        if region is not None:
            blocks += _blocks(p, a, b, b_in_a, nb, cb, region, bases[-3], eps[-1])
    if not blocks:
        return [EMPTY] * len(items)
    all_n, all_c = np.concatenate(normals), np.concatenate(offsets)
    pts, pair, inc_point, inc_plane = _clip(blocks)
    inc_plane = _merge_coplanar(inc_plane, all_n, all_c, np.array(bases), eps)[inc_plane]
    return assemble(pts, pair, inc_point, inc_plane, all_n, len(items), np.array(eps))


@dataclass(frozen=True, eq=False)
class _Block:
    """Edges of one part to clip against planes of the other (all in the first part's frame)."""

    pair: int
    p0: np.ndarray  # (3, E) edge ends
    p1: np.ndarray
    own: np.ndarray  # (E, 2) ids of the planes on either side of each edge
    normals: np.ndarray  # (C, 3) clipping planes: the other part's near faces, then the region's
    offsets: np.ndarray  # (C,)
    ids: np.ndarray  # (C,) plane ids; -1 for the region's planes (they bound no face)
    eps: float


def _blocks(p: int, a: ConvexShape, b: ConvexShape, b_in_a: np.ndarray, nb: np.ndarray,
            cb: np.ndarray, region: tuple[np.ndarray, np.ndarray], base: int,
            eps: float) -> list[_Block]:
    """The two clipping jobs of one pair: A's edges against B's planes and B's against A's."""
    xn, xc = region
    bits = 1 << np.arange(len(xc))
    code_a = bits @ (xn @ a.vertices_t + xc[:, None] > 0)  # bit k: beyond region plane k
    code_b = bits @ (xn @ b_in_a + xc[:, None] > 0)
    none = np.full(len(xc), -1)
    base_b = base + len(a.normals)
    out = []
    for verts, shape, code, own_base, other, other_code, other_n, other_c, other_base in (
            (a.vertices_t, a, code_a, base, b, code_b, nb, cb, base_b),
            (b_in_a, b, code_b, base_b, a, code_a, a.normals, a.offsets, base)):
        e0, e1 = shape.edges[:, 0], shape.edges[:, 1]
        near = np.flatnonzero((code[e0] & code[e1]) == 0)  # not wholly beyond one region side
        if not len(near):
            continue
        # only the other part's faces that meet the region can bound what lies in it
        faces = np.flatnonzero(
            np.bitwise_and.reduceat(other_code[other.facet_vertices], other.facet_starts) == 0)
        out.append(_Block(p, verts[:, e0[near]], verts[:, e1[near]],
                          shape.edge_planes[near] + own_base,
                          np.concatenate([other_n[faces], xn]),
                          np.concatenate([other_c[faces], xc]),
                          np.concatenate([faces + other_base, none]), eps))
    return out


def _overlap_region(a: ConvexShape, b: ConvexShape, b_in_a: np.ndarray, rot: np.ndarray,
                    shift: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Planes (in A's frame) of a convex region holding A ∩ B, or None when that is empty.

    The region is A's box ∩ B's box (each in its own frame) ∩ the slab of both
    parts along the line between their centres, grown by eps. An edge's piece
    inside the other part lies in the region, and, by convexity, only the other
    part's faces that meet the region can bound it: the rest are never looked at.
    """
    a_in_b = rot.T @ (a.vertices_t - shift[:, None])
    lo_a = np.maximum(a.lo, b_in_a.min(axis=1)) - eps
    hi_a = np.minimum(a.hi, b_in_a.max(axis=1)) + eps
    lo_b = np.maximum(b.lo, a_in_b.min(axis=1)) - eps
    hi_b = np.minimum(b.hi, a_in_b.max(axis=1)) + eps
    axis = rot @ ((b.lo + b.hi) / 2) + shift - (a.lo + a.hi) / 2
    length = float(np.linalg.norm(axis))
    axis = axis / length if length > 0 else np.array([1.0, 0.0, 0.0])
    ha, hb = axis @ a.vertices_t, axis @ b_in_a
    slab_lo, slab_hi = max(ha.min(), hb.min()) - eps, min(ha.max(), hb.max()) + eps
    if np.any(lo_a > hi_a) or np.any(lo_b > hi_b) or slab_lo > slab_hi:
        return None
    ax_b = rot.T  # rows: B's axes in A's frame
    normals = np.concatenate([-_EYE, _EYE, -ax_b, ax_b, [-axis, axis]])
    offsets = np.concatenate([lo_a, -hi_a, ax_b @ shift + lo_b, -(ax_b @ shift) - hi_b,
                              [slab_lo, -slab_hi]])
    return normals, offsets


_EYE = np.eye(3)


def _clip(blocks: list[_Block]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clip every block's edges to its planes (rows = edges of all blocks).

    Returns the points that can be vertices of an intersection: the ends of
    the edges' pieces inside the other part (an inside vertex once per edge
    that reaches it); the pair of each point; and which point lies on which
    plane: the edge's own two planes, and the plane(s) that cut it there.
    Only (edge, plane) crossings are handled as floats.
    """
    outside, rows, cols, s_p, s_q, entering = [], [], [], [], [], []
    first = 0
    for b in blocks:
        planes = np.concatenate([b.normals.T, b.offsets[None]])  # (4, C): one matmul adds c too
        s0 = _homogeneous(b.p0) @ planes  # (E, C) plane values at the edge ends; > eps: outside
        s1 = _homogeneous(b.p1) @ planes
        o0, o1 = s0 > b.eps, s1 > b.eps
        out = (o0 & o1).any(axis=1)  # both ends beyond one plane: the edge misses the part
        flat = np.flatnonzero((o0 != o1) & ~out[:, None])  # row-major: rows stay sorted
        r, k = np.divmod(flat, len(b.offsets))
        outside.append(out)
        rows.append(r + first)
        cols.append(b.ids[k])
        s_p.append(s0.ravel()[flat])
        s_q.append(s1.ravel()[flat])
        entering.append(o0.ravel()[flat])
        first += len(out)
    row, plane, sp, sq = (np.concatenate(x) for x in (rows, cols, s_p, s_q))
    enter = np.concatenate(entering)
    # where the edge crosses the plane: on the plane, clamped to the edge when within eps
    t = np.minimum(np.maximum(sp / (sp - sq), 0.0), 1.0)
    t_lo, bound_lo = _extreme(np.maximum, row[enter], t[enter], plane[enter], first, -np.inf)
    t_hi, bound_hi = _extreme(np.minimum, row[~enter], t[~enter], plane[~enter], first, np.inf)
    keep = ~np.concatenate(outside) & (np.maximum(t_lo, 0) <= np.minimum(t_hi, 1))
    lo_cut, hi_cut = keep & (t_lo > 0), keep & (t_hi < 1)
    p0 = np.concatenate([b.p0 for b in blocks], axis=1)
    d = np.concatenate([b.p1 for b in blocks], axis=1) - p0
    pair = np.repeat([b.pair for b in blocks], [b.p0.shape[1] for b in blocks])
    own = np.concatenate([b.own for b in blocks])
    # the piece of edge r runs from p0 + t0 d to p0 + t1 d
    t0, t1 = np.where(lo_cut, t_lo, 0.0), np.where(hi_cut, t_hi, 1.0)
    kept = np.flatnonzero(keep)
    n = len(kept)
    ends = np.concatenate([p0[:, kept] + t0[kept] * d[:, kept], p0[:, kept] + t1[kept] * d[:, kept]],
                          axis=1).T
    # incidence: both ends lie on the edge's own planes; a cut end also on its cutting plane(s)
    slot = np.full(first, -1)
    slot[kept] = np.arange(n)
    lo_b = bound_lo[lo_cut[bound_lo[:, 0]]]
    hi_b = bound_hi[hi_cut[bound_hi[:, 0]]]
    lo_b, hi_b = lo_b[lo_b[:, 1] >= 0], hi_b[hi_b[:, 1] >= 0]  # the region's planes bound no face
    point = np.concatenate([np.tile(np.arange(2 * n), 2), slot[lo_b[:, 0]], slot[hi_b[:, 0]] + n])
    plane = np.concatenate([own[kept, 0], own[kept, 0], own[kept, 1], own[kept, 1],
                            lo_b[:, 1], hi_b[:, 1]])
    return ends, np.tile(pair[kept], 2), point, plane


def _homogeneous(p: np.ndarray) -> np.ndarray:
    """(E, 4) rows (x, y, z, 1) from (3, E) columns."""
    out = np.ones((p.shape[1], 4))
    out[:, :3] = p.T
    return out


def _extreme(ufunc: np.ufunc, row: np.ndarray, t: np.ndarray, plane: np.ndarray, n_rows: int,
             fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row the max (or min) of ``t`` (``fill`` for rows without any), and the (row, plane)
    pairs that attain it. ``row`` is sorted."""
    out = np.full(n_rows, fill)
    if not len(row):
        return out, np.zeros((0, 2), dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], row[1:] != row[:-1]]))
    out[row[starts]] = ufunc.reduceat(t, starts)
    hit = t == out[row]
    return out, np.stack([row[hit], plane[hit]], axis=1)


def _merge_coplanar(used: np.ndarray, normals: np.ndarray, offsets: np.ndarray, bases: np.ndarray,
                    eps: list[float]) -> np.ndarray:
    """Map every plane id to itself, except B's planes that coincide with one of A's (same side):
    those map to A's, so their common face is built once."""
    canon = np.arange(len(normals))
    mask = np.zeros(len(normals), dtype=bool)
    mask[used] = True
    ids = np.flatnonzero(mask)
    cut = np.searchsorted(ids, bases)  # ids of pair p: A's in cut[2p]:cut[2p+1], B's up to cut[2p+2]
    for p, e in enumerate(eps):
        ia, ib = ids[cut[2 * p]:cut[2 * p + 1]], ids[cut[2 * p + 1]:cut[2 * p + 2]]
        if not len(ia) or not len(ib):
            continue
        same = ((np.take(normals, ib, axis=0) @ np.take(normals, ia, axis=0).T > 1.0 - 1e-12)
                & (np.abs(offsets[ib][:, None] - offsets[ia]) <= e))
        hit = np.flatnonzero(same.any(axis=1))
        if len(hit):
            canon[ib[hit]] = ia[same[hit].argmax(axis=1)]
    return canon
