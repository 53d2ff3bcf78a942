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

from collections.abc import Callable
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

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
    points: np.ndarray  # (4, V) the same as columns (x, y, z, 1): one matmul moves them or
    #                     evaluates planes at them; numpy works faster along long rows
    edges: np.ndarray  # (2, E) vertex indices of the feature edges' ends
    edge_planes: np.ndarray  # (E, 2) the planes on either side of each edge
    facet_vertices: np.ndarray  # vertices of each plane's face, grouped by plane
    facet_starts: np.ndarray  # (H,) where each plane's group starts in facet_vertices
    planes: np.ndarray  # (H, 4) rows (n, c): unit outward normal n, one per distinct face plane
    lo: np.ndarray
    hi: np.ndarray
    scale: float  # largest extent, m
    pairs: WeakKeyDictionary[ConvexShape, _PairShape] = field(
        default_factory=WeakKeyDictionary, repr=False)  # with each B met so far: both stacked

    @property
    def centre(self) -> np.ndarray:
        return (self.lo + self.hi) / 2


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
    return ConvexShape(v, np.concatenate([v.T, np.ones((1, len(v)))]),
                       np.ascontiguousarray(edges.T), edge_planes, incidence[:, 1], starts,
                       np.ascontiguousarray(planes), lo, hi, scale)


def _feature_edges(faces: np.ndarray, plane_of: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Edges (e0 < e1) between faces on different planes, with those two planes: first the one
    whose boundary runs e0 → e1 (counter-clockwise seen from outside), then the one where it
    runs e1 → e0. None if the mesh is not 2-manifold and consistently oriented."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = np.sort(half, axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, face = key[order], np.repeat(np.arange(len(faces)), 3)[order]
    if len(key) % 2 or np.any(key[0::2] != key[1::2]) or np.all(key[1:-1:2] == key[2::2], axis=1).any():
        return None, np.zeros((0, 2))
    forward = half[order, 0] < half[order, 1]  # this face's boundary runs e0 → e1
    if np.any(forward[0::2] == forward[1::2]):
        return None, np.zeros((0, 2))
    first = np.where(forward[0::2], face[0::2], face[1::2])
    second = np.where(forward[0::2], face[1::2], face[0::2])
    pa, pb = plane_of[first], plane_of[second]
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
    frames = _Frames(items)
    blocks: list[_Block] = []
    planes, bases = [], [0]
    for p, (a, b, _) in enumerate(items):
        jobs, near, n_a = _blocks(p, _pair_shape(a, b), frames, bases[-1])
        blocks += jobs
        planes.append(near)
        bases += [bases[-1] + n_a, bases[-1] + len(near)]
    if not blocks:
        return [EMPTY] * len(items)
    all_planes = np.concatenate(planes)
    pts, pair, inc_point, inc_plane = _clip(blocks)
    inc_plane = _merge_coplanar(inc_plane, all_planes, np.array(bases), frames.eps)[inc_plane]
    return assemble(pts, pair, inc_point, inc_plane, all_planes[:, :3].T, len(items), frames.eps)


@dataclass(frozen=True, eq=False)
class _PairShape:
    """Two convex parts stacked, A's items first, so one numpy call treats both."""

    points_a: np.ndarray  # (4, Va)
    points_b: np.ndarray  # (4, Vb) in B's own frame
    n_points: int  # Va
    edges: np.ndarray  # (2, Ea + Eb) into A's points, then B's (numbered from Va on)
    n_edges: int  # Ea
    edge_planes: np.ndarray  # (Ea + Eb, 2) into planes
    facet_vertices: np.ndarray  # into A's points, then B's
    facet_starts: np.ndarray  # (Ha + Hb,)
    planes: np.ndarray  # (Ha + Hb, 4) in the parts' own frames
    n_planes: int  # Ha

    @property
    def split(self) -> list[int]:
        return [0, self.n_points]

    def clip_ids(self, n_a: int, n_b: int) -> np.ndarray:
        """Ids of the clipping planes (B's n_b, the region's 14, A's n_a) less the base; the
        region's are the caller's to set."""
        out = np.arange(-n_b - 14, n_a)
        out[:n_b] += n_a + n_b + 14
        return out


def _pair_shape(a: ConvexShape, b: ConvexShape) -> _PairShape:
    """The stacked pair, built when the two first meet and kept with A while B lives."""
    hit = a.pairs.get(b)
    if hit is None:
        va, ha = a.points.shape[1], len(a.planes)
        hit = _PairShape(a.points, b.points, va,
                         np.concatenate([a.edges, b.edges + va], axis=1), a.edges.shape[1],
                         np.concatenate([a.edge_planes, b.edge_planes + ha]),
                         np.concatenate([a.facet_vertices, b.facet_vertices + va]),
                         np.concatenate([a.facet_starts, b.facet_starts + len(a.facet_vertices)]),
                         np.concatenate([a.planes, b.planes]), ha)
        a.pairs[b] = hit
    return hit


class _Frames:
    """Per pair, computed for the whole batch at once: the pose of B in A's frame and back, the
    directions of the overlap region's slabs, and the tolerance."""

    def __init__(self, items: list[tuple[ConvexShape, ConvexShape, np.ndarray]]) -> None:
        rel = np.stack([r for _, _, r in items])
        rot, shift = rel[:, :3, :3], rel[:, :3, 3]
        back = rot.transpose(0, 2, 1)  # rows: B's axes in A's frame
        self.to_a = rel  # B's points (columns) in A's frame
        inv = np.zeros_like(rel)  # A's frame in B's: planes (rows) of B times this are in A's
        inv[:, :3, :3] = back
        inv[:, :3, 3] = -(back @ shift[:, :, None])[:, :, 0]
        inv[:, 3, 3] = 1.0
        self.planes_to_a = inv
        centre_a = np.stack([a.centre for a, _, _ in items])
        centre_b = np.stack([b.centre for _, b, _ in items])
        axis = (rot @ centre_b[:, :, None])[:, :, 0] + shift - centre_a
        length = np.sqrt((axis * axis).sum(axis=1))[:, None]
        axis = np.where(length > 0, axis / np.where(length > 0, length, 1.0), _EYE[0])
        # slabs: A's box, B's box (each in its own frame) and along the line between the centres
        dirs = np.zeros((len(items), 7, 4))
        dirs[:, :3, :3] = _EYE
        dirs[:, 3:6, :3] = back
        dirs[:, 6, :3] = axis
        self.dirs = dirs
        self.slabs = np.concatenate([-dirs, dirs], axis=1)  # (P, 14, 4); offsets filled per pair
        self.eps = _REL_EPS * np.array([max(a.scale, b.scale) for a, b, _ in items])


_EYE = np.eye(3)
_BITS = np.ldexp(1.0, np.arange(14))


@dataclass(frozen=True, eq=False)
class _Block:
    """Edges of one part to clip against planes of the other (all in the first part's frame)."""

    pair: int
    ends: np.ndarray  # (4, 2, E) edge ends (x, y, z, 1)
    own: np.ndarray  # (E, 2) ids of the planes on either side of each edge
    planes: np.ndarray  # (C, 4) clipping planes (n, c - eps): the other part's near faces and the region's
    ids: np.ndarray  # (C,) plane ids; -1 for the region's planes (they bound no face)
    eps: float


def _blocks(p: int, s: _PairShape, frames: _Frames, base: int) -> tuple[list[_Block], np.ndarray, int]:
    """The two clipping jobs of pair p (A's edges against B's planes and B's against A's); the
    planes (n, c) in A's frame of the faces that meet the overlap region, A's then B's, numbered
    from ``base`` on; and how many of them are A's.

    The region is A's box ∩ B's box (each in its own frame) ∩ the slab of both parts along the
    line between their centres, grown by eps. An edge's piece inside the other part lies in the
    region, and, by convexity, only the other part's faces that meet the region can bound it: the
    rest are never looked at. The faces on either side of an edge that meets it are among them.
    """
    eps = frames.eps[p]
    rel, dirs = frames.to_a[p], frames.dirs[p]
    proj = np.concatenate([dirs @ s.points_a, (dirs @ rel) @ s.points_b], axis=1)  # (7, V)
    lo = np.minimum.reduceat(proj, s.split, axis=1).max(axis=1) - eps
    hi = np.maximum.reduceat(proj, s.split, axis=1).min(axis=1) + eps
    if (lo > hi).any():
        return [], _NO_PLANES, 0
    # bit k of a point's code: beyond region plane k (a float matmul: numpy's integer matmul is
    # several times slower)
    code = (_BITS @ np.concatenate([proj < lo[:, None], proj > hi[:, None]])).astype(np.int64)
    ends = code[s.edges]
    edges = np.flatnonzero((ends[0] & ends[1]) == 0)  # not wholly beyond one region side
    if not len(edges):
        return [], _NO_PLANES, 0
    faces = np.flatnonzero(np.bitwise_and.reduceat(code[s.facet_vertices], s.facet_starts) == 0)
    n_a, n_ea = int(np.searchsorted(faces, s.n_planes)), int(np.searchsorted(edges, s.n_edges))
    n_b = len(faces) - n_a
    # clipping planes: B's, the region's (-d·x + lo ≤ 0, d·x - hi ≤ 0), A's; A's edges use the
    # first part, B's the last
    clip = np.empty((len(faces) + 14, 4))
    np.take(s.planes, faces[n_a:], axis=0, out=clip[:n_b])
    clip[:n_b] = clip[:n_b] @ frames.planes_to_a[p]  # B's planes in A's frame
    clip[n_b:n_b + 14] = frames.slabs[p]
    clip[n_b:n_b + 7, 3] = lo
    clip[n_b + 7:n_b + 14, 3] = -hi
    np.take(s.planes, faces[:n_a], axis=0, out=clip[n_b + 14:])
    near = np.concatenate([clip[n_b + 14:], clip[:n_b]])  # A's, then B's: ids base, base + 1, ...
    clip[:, 3] -= eps  # a value > 0 now means beyond the plane by more than eps
    ids = s.clip_ids(n_a, n_b) + base
    ids[n_b:n_b + 14] = -1
    ends_a = np.take(s.points_a, s.edges[:, edges[:n_ea]], axis=1)  # (4, 2, E)
    ends_b = rel @ np.take(s.points_b, s.edges[:, edges[n_ea:]] - s.n_points, axis=1).reshape(4, -1)
    number = np.empty(len(s.planes), dtype=np.int64)  # the faces' ids
    number[faces] = np.arange(base, base + len(faces))
    own = number[np.take(s.edge_planes, edges, axis=0)]
    out = [_Block(p, ends_a, own[:n_ea], clip[:n_b + 14], ids[:n_b + 14], eps),
           _Block(p, ends_b.reshape(4, 2, -1), own[n_ea:], clip[n_b:], ids[n_b:], eps)]
    return [b for b in out if len(b.own)], near, n_a


_NO_PLANES = np.zeros((0, 4))


def _clip(blocks: list[_Block]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clip every block's edges to its planes (rows = edges of all blocks).

    Returns the points (3, n) that can be vertices of an intersection: the ends of
    the edges' pieces inside the other part (an inside vertex once per edge
    that reaches it); the pair of each point; and which point lies on which
    plane: the edge's own two planes, and the plane(s) that cut it there.
    Only (edge, plane) crossings are handled as floats.
    """
    row, flat, sp, sq, enter, outside, plane_of = _crossings(blocks)
    n_rows = len(outside)
    # where the edge crosses the plane: on the plane, clamped to the edge when within eps
    t = np.minimum(np.maximum(sp / (sp - sq), 0.0), 1.0)
    leave = ~enter
    t_lo, lo_row, lo_at = _extreme(np.maximum, row[enter], t[enter], flat[enter], n_rows, -np.inf)
    t_hi, hi_row, hi_at = _extreme(np.minimum, row[leave], t[leave], flat[leave], n_rows, np.inf)
    lo_plane, hi_plane = plane_of(lo_at, lo_row), plane_of(hi_at, hi_row)
    keep = ~outside & (np.maximum(t_lo, 0) <= np.minimum(t_hi, 1))
    lo_cut, hi_cut = keep & (t_lo > 0), keep & (t_hi < 1)
    kept = np.flatnonzero(keep)
    ends = np.take(np.concatenate([b.ends[:3] for b in blocks], axis=2), kept, axis=2)  # (3, 2, n)
    p0, p1 = ends[:, 0], ends[:, 1]
    pair = np.repeat([b.pair for b in blocks], [len(b.own) for b in blocks])
    own = np.concatenate([b.own for b in blocks])
    # the piece of edge r runs from p0 + t0 (p1 - p0) to p0 + t1 (p1 - p0)
    t0, t1 = np.where(lo_cut, t_lo, 0.0)[kept], np.where(hi_cut, t_hi, 1.0)[kept]
    n = len(kept)
    d = p1 - p0
    points = np.concatenate([p0 + t0 * d, p0 + t1 * d], axis=1)
    # incidence: a cut end lies on the edge's own two planes and on its cutting plane(s). An
    # uncut end is a vertex of the part, inside the other one: it is put on each face around
    # it once, by the face's boundary edge that starts there (own[0] runs e0 → e1, own[1]
    # e1 → e0), not once per edge that reaches it
    slot = np.full(n_rows, -1)
    slot[kept] = np.arange(n)
    lo_b = lo_cut[lo_row] & (lo_plane >= 0)  # the region's planes bound no face
    hi_b = hi_cut[hi_row] & (hi_plane >= 0)
    first, cut0, cut1 = np.arange(n), lo_cut[kept], hi_cut[kept]
    own = np.take(own, kept, axis=0).T
    point = np.concatenate([first, first[cut0], first[cut1] + n, first + n, slot[lo_row[lo_b]],
                            slot[hi_row[hi_b]] + n])
    plane = np.concatenate([own[0], own[1, cut0], own[0, cut1], own[1], lo_plane[lo_b],
                            hi_plane[hi_b]])
    pair = pair[kept]
    return points, np.concatenate([pair, pair]), point, plane


def _crossings(blocks: list[_Block]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                              np.ndarray, np.ndarray,
                                              Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """The (edge, plane) pairs of all blocks where the plane separates the edge's ends.

    Returns per crossing its row (edge, sorted), its place in the flat buffers, the plane's
    values at both ends and whether the edge enters the plane's halfspace; per row whether the
    edge misses the other part (both ends beyond one plane); and a function giving the plane ids
    of crossings (place, row), used only for the few that bound a piece. The plane values of
    each block are one matmul into a flat buffer; everything after that is done once for all
    blocks.
    """
    sizes = [len(b.own) * len(b.ids) for b in blocks]
    offsets = np.cumsum([0] + sizes)
    s0, s1 = np.empty(offsets[-1]), np.empty(offsets[-1])
    for b, start, stop in zip(blocks, offsets[:-1], offsets[1:], strict=True):
        shape = (len(b.own), len(b.ids))
        np.matmul(b.ends[:, 0].T, b.planes.T, out=s0[start:stop].reshape(shape))
        np.matmul(b.ends[:, 1].T, b.planes.T, out=s1[start:stop].reshape(shape))
    width = np.repeat([len(b.ids) for b in blocks], [len(b.own) for b in blocks])
    starts = np.cumsum(width) - width  # where each row starts in the flat buffers
    o0, o1 = s0 > 0, s1 > 0
    outside = np.logical_or.reduceat(o0 & o1, starts)
    cross = o0 != o1
    cross &= np.repeat(~outside, width)
    flat = np.flatnonzero(cross)
    row = np.searchsorted(starts, flat, side="right") - 1
    first_id = np.repeat(np.cumsum([0] + [len(b.ids) for b in blocks[:-1]]),
                         [len(b.own) for b in blocks]) - starts
    ids = np.concatenate([b.ids for b in blocks])
    eps = np.repeat([b.eps for b in blocks], [len(b.own) for b in blocks])[row]

    def plane_of(at: np.ndarray, at_row: np.ndarray) -> np.ndarray:
        return ids[at + first_id[at_row]]

    return row, flat, s0[flat] + eps, s1[flat] + eps, o0[flat], outside, plane_of


def _extreme(ufunc: np.ufunc, row: np.ndarray, t: np.ndarray, plane: np.ndarray, n_rows: int,
             fill: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row the max (or min) of ``t`` (``fill`` for rows without any), and the rows and planes
    of the crossings that attain it. ``row`` is sorted."""
    out = np.full(n_rows, fill)
    if not len(row):
        return out, row, plane
    starts = np.concatenate([[0], np.flatnonzero(row[1:] != row[:-1]) + 1])
    out[row[starts]] = ufunc.reduceat(t, starts)
    hit = t == out[row]
    return out, row[hit], plane[hit]


def _merge_coplanar(used: np.ndarray, planes: np.ndarray, bases: np.ndarray,
                    eps: np.ndarray) -> np.ndarray:
    """Map every plane id to itself, except B's planes that coincide with one of A's (same side):
    those map to A's (the first such), so their common face is built once.

    Coinciding unit normals (n_a·n_b > 1 - 1e-12) differ by less than 1.5e-6 in x, so A's planes
    of all pairs are sorted by (pair, x) and each B plane is compared only with the A planes of
    its pair within 2e-6 in x (usually none).
    """
    canon = np.arange(len(planes))
    mask = np.zeros(len(planes), dtype=bool)
    mask[used] = True
    ids = np.flatnonzero(mask)
    side = np.searchsorted(bases, ids, side="right") - 1  # 2 × pair, + 1 for B's planes
    key = side // 2 * 4.0 + planes[ids, 0]  # x in [-1, 1]: pairs 4 apart
    a_ids, a_key = ids[side % 2 == 0], key[side % 2 == 0]
    b_ids, b_key = ids[side % 2 == 1], key[side % 2 == 1]
    order = np.argsort(a_key)
    a_ids, a_key = a_ids[order], a_key[order]
    first = np.searchsorted(a_key, b_key - 2e-6)
    count = np.searchsorted(a_key, b_key + 2e-6, side="right") - first
    if not count.any():
        return canon
    b = np.repeat(b_ids, count)
    a = a_ids[np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())]
    e = eps[side[np.searchsorted(ids, b)] // 2]
    same = ((np.einsum("ij,ij->i", planes[b, :3], planes[a, :3]) > 1.0 - 1e-12)
            & (np.abs(planes[b, 3] - planes[a, 3]) <= e))
    order = np.lexsort((a[same], b[same]))  # by B plane, then A id
    b, a = b[same][order], a[same][order]
    first = np.concatenate([np.ones(min(len(b), 1), dtype=bool), b[1:] != b[:-1]])
    canon[b[first]] = a[first]
    return canon
