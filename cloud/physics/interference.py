"""Interference and clearance between every pair of parts.

Broad phase: world-space AABBs of all parts, compared all-against-all with
numpy (a sort-free O(n²) test that is microseconds for hundreds of parts).
Narrow phase: python-fcl BVH (OBBRSS) models in the part frame, built per
geometry when a query first needs them and kept between queries; only the
poses change. Interference volume, in the first part's frame (so parts far
from the origin lose no precision): for two convex parts (most tessellated
CAD parts: pins, blocks, plates, cylinders) the intersection is a convex
polytope built directly from the two meshes' edges and planes
(``cloud.physics.convex``), exact up to rounding and a fraction of a
millisecond; the crossing pairs of one check are built together. Other
pairs, and the rare convex pair whose faces do not close, use an exact
boolean with manifold3d (double precision). Each intersection is kept per
relative pose.

Classification, the way CAD interference detection reports it:
- ``interfering``: the solids share volume thicker than the tolerance
  (the intersection's mean thickness 2V/S > tolerance), or one contains the other;
- ``touching``: the surfaces are within the tolerance of each other but the
  shared volume (if any) is thinner than the tolerance;
- ``clear``: the minimum distance is larger than the tolerance.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from functools import cached_property

import fcl
import numpy as np

from cloud.physics.assembly import Part
from cloud.physics.budget import check_time
from cloud.physics.contact import (
    NO_FACES,
    Contact,
    crossing_points,
    inside,
    inside_faces,
    inverse,
    moved,
    near_faces,
    near_features,
    spread,
)
from cloud.physics.convex import intersect_many
from cloud.physics.open_depth import surface_depth
from cloud.physics.pair_result import PairResult, severity
from cloud.physics.polytope import Polytope
from cloud.physics.structures import _Boolean, _centroid, _Geometry
from cloud.physics.units import DEFAULT_TOLERANCE_M

__all__ = ["CollisionWorld"]

_MAX_CONTACTS = 100_000  # triangle pairs asked of fcl for the faces in contact


def _length(x: float) -> str:
    return f"{x * 1e3:.4g} mm"


_SHARED_CACHE = 4096  # intersection solids kept per world (least recently used dropped)


class CollisionWorld:
    """Acceleration structures for one assembly's parts; poses can be updated in place.

    Structures are built when a query first needs them: fcl BVHs only for parts
    whose AABBs come near another part, manifold solids only for pairs whose
    surfaces cross. Parts with identical geometry (equal ``PartMesh.digest``)
    share them. Intersection solids are kept per (geometry, geometry, relative
    pose), so a repeated check does no boolean unless two parts moved relative
    to each other; ``cache_results=False`` turns that and the per-pose result
    cache off (for measuring the cost of recomputing). ``convex=False`` computes
    every intersection with a boolean, also for convex pairs (for comparison).
    """

    def __init__(self, parts: list[Part], *, cache_results: bool = True, convex: bool = True) -> None:
        self.parts = list(parts)
        self.names = [p.name for p in parts]
        shapes: dict[bytes, _Geometry] = {}
        self._geom = [shapes.setdefault(p.mesh.digest, _Geometry(p.mesh)) for p in parts]
        self._objects: list[fcl.CollisionObject | None] = [None] * len(parts)
        self._cache: dict[tuple, PairResult] = {}
        self._shared: OrderedDict[tuple, Polytope] = OrderedDict()
        self._cache_results = cache_results
        self._use_convex = convex
        self._lock = threading.Lock()
        self.poses = np.stack([p.pose for p in parts]).astype(float)
        self.lo, self.hi = np.zeros((len(parts), 3)), np.zeros((len(parts), 3))
        self._gaps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._moved: set[int] = set()  # parts moved since the gaps were computed
        for k in range(len(parts)):
            self._place(k)

    def set_poses(self, poses: np.ndarray) -> None:
        """Move the parts: ``poses`` is (n, 4, 4) with translations in metres.

        Only the parts whose pose changed are updated (AABB, fcl transform).
        """
        poses = np.array(poses, dtype=float)
        if poses.shape != self.poses.shape:
            raise ValueError(f"poses must be {self.poses.shape} (got {poses.shape})")
        changed = np.flatnonzero(np.any(poses != self.poses, axis=(1, 2)))
        self.poses = poses
        for k in changed.tolist():
            self._place(k)
        with self._lock:
            self._moved.update(changed.tolist())

    def _place(self, k: int) -> None:
        pose = self.poses[k]
        obj = self._objects[k]
        if obj is not None:
            obj.setTransform(fcl.Transform(pose[:3, :3], pose[:3, 3]))
        world = pose[:3, :3] @ self._geom[k].support_t  # (3, V): reductions along rows are fast
        self.lo[k] = world.min(axis=1) + pose[:3, 3]
        self.hi[k] = world.max(axis=1) + pose[:3, 3]

    def build_all(self) -> None:
        """Build every part's BVH now (otherwise each is built when a query first needs it)."""
        for k in range(len(self.parts)):
            self._object(k)

    def _object(self, i: int) -> fcl.CollisionObject:
        obj = self._objects[i]
        if obj is None:
            pose = self.poses[i]
            obj = fcl.CollisionObject(self._geom[i].bvh, fcl.Transform(pose[:3, :3], pose[:3, 3]))
            self._objects[i] = obj
        return obj

    # --- broad phase ------------------------------------------------------------------
    def aabb_gaps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs i<j with the lower bound of their distance from the AABBs (kept until poses change).

        After a few parts moved only their pairs are recomputed (n - 1 per part).
        """
        n = len(self.parts)
        with self._lock:  # API requests may query one world from several threads
            if self._gaps is not None and not self._moved:
                return self._gaps
            i, j = self._pairs
            if self._gaps is None or len(self._moved) > n // 8:
                self._gaps = (i, j, self._gap(i, j))
            else:
                k = np.array(sorted(self._moved))[:, None]
                below = np.arange(n)[None, :]  # pair (m, k) for m < k, then (k, m) for m > k
                idx = np.where(below < k, below * n - below * (below + 1) // 2 + k - below - 1,
                               k * n - k * (k + 1) // 2 + below - k - 1)[below != k]
                lb = self._gaps[2].copy()  # a copy: a caller may still hold the old arrays
                lb[idx] = self._gap(i[idx], j[idx])
                self._gaps = (i, j, lb)
            self._moved.clear()
            return self._gaps

    def _gap(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        lo, hi = self.lo.T, self.hi.T  # (3, n): gathers and arithmetic on rows are fast
        gap = np.maximum(np.maximum(lo[:, j] - hi[:, i], lo[:, i] - hi[:, j]), 0.0)
        return np.sqrt(gap[0] * gap[0] + gap[1] * gap[1] + gap[2] * gap[2])

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        i, j = np.triu_indices(len(self.parts), k=1)
        return i, j

    def candidate_pairs(self, margin: float) -> list[tuple[int, int]]:
        i, j, lb = self.aabb_gaps()
        keep = lb <= margin
        return list(zip(i[keep].tolist(), j[keep].tolist(), strict=True))

    # --- narrow phase -----------------------------------------------------------------
    def distance(self, i: int, j: int) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """Exact minimum distance (m) between the surfaces and the two closest points (world).

        At zero distance the points are a contact point, or None when the surfaces only
        share a face (flush contact has no single witness point).
        """
        check_time("measuring distances between parts")
        oi, oj = self._object(i), self._object(j)
        req = fcl.DistanceRequest(enable_nearest_points=True)
        res = fcl.DistanceResult()
        d = max(float(fcl.distance(oi, oj, req, res)), 0.0)
        pa: np.ndarray | None = np.array(res.nearest_points[0])
        pb: np.ndarray | None = np.array(res.nearest_points[1])
        if d == 0.0:  # fcl gives no witness points for contact: take a contact point instead
            contacts = fcl.CollisionResult()
            fcl.collide(oi, oj, fcl.CollisionRequest(num_max_contacts=1, enable_contact=True),
                        contacts)
            pa = pb = np.array(contacts.contacts[0].pos) if contacts.contacts else None
        return d, pa, pb

    def crossing_faces(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the triangles of i and of j whose surfaces cross the other part's surface."""
        pairs = self._crossing_pairs(i, j, self.poses[i], self.poses[j])
        return np.unique(pairs[:, 0]), np.unique(pairs[:, 1])

    def _crossing_pairs(self, i: int, j: int, pose_i: np.ndarray, pose_j: np.ndarray,
                        points: bool = True) -> np.ndarray:
        """(k, 2) triangle pairs (of i, of j) that cross, the parts at the given poses.

        ``points=False`` skips fcl's contact points (and the second entry it adds for some
        pairs): the same pairs in the same order, for crossing surfaces, at a fraction of the
        cost. Flush faces keep ``points``: fcl tests coplanar triangles differently without them.
        """
        oi = fcl.CollisionObject(self._geom[i].bvh, fcl.Transform(pose_i[:3, :3], pose_i[:3, 3]))
        oj = fcl.CollisionObject(self._geom[j].bvh, fcl.Transform(pose_j[:3, :3], pose_j[:3, 3]))
        result = fcl.CollisionResult()
        fcl.collide(oi, oj, fcl.CollisionRequest(num_max_contacts=_MAX_CONTACTS, enable_contact=points), result)
        return np.array([(c.b1, c.b2) for c in result.contacts], dtype=np.int64).reshape(-1, 2)

    def surfaces_cross(self, i: int, j: int) -> bool:
        return bool(fcl.collide(self._object(i), self._object(j), fcl.CollisionRequest(),
                                fcl.CollisionResult()))

    def _relative(self, i: int, j: int) -> tuple[tuple, np.ndarray]:
        """The cache key of a pair's intersection and the pose of j in i's frame."""
        pi, pj = self.poses[i], self.poses[j]
        rel = np.eye(4)  # pose of j in i's frame: small coordinates wherever the pair sits
        rel[:3, :3] = pi[:3, :3].T @ pj[:3, :3]
        rel[:3, 3] = pi[:3, :3].T @ (pj[:3, 3] - pi[:3, 3])
        return (self._geom[i].mesh.digest, self._geom[j].mesh.digest, rel.tobytes()), rel

    def _cached_solid(self, key: tuple) -> Polytope | None:
        if not self._cache_results:
            return None
        with self._lock:  # API requests may query one world from several threads
            hit = self._shared.get(key)
            if hit is not None:
                self._shared.move_to_end(key)
            return hit

    def _keep_solid(self, key: tuple, solid: Polytope) -> None:
        if self._cache_results:
            with self._lock:
                self._shared[key] = solid
                if len(self._shared) > _SHARED_CACHE:
                    self._shared.popitem(last=False)

    def _convex_solids(self, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], Polytope]:
        """The intersections of the convex pairs among ``pairs`` not cached yet, built in one batch."""
        todo, keys = [], []
        for i, j in pairs:
            gi, gj = self._geom[i], self._geom[j]
            if not self._use_convex or gi.convex is None or gj.convex is None:
                continue
            key, rel = self._relative(i, j)
            if self._cached_solid(key) is None:
                todo.append((i, j, (gi.convex, gj.convex, rel)))
                keys.append(key)
        out = {}
        solids = intersect_many([t[2] for t in todo]) if todo else []
        for (i, j, _), key, solid in zip(todo, keys, solids, strict=True):
            if solid is not None:  # faces that did not close: left to the boolean
                self._keep_solid(key, solid)
                out[i, j] = solid
        return out

    def _shared_solid(self, i: int, j: int,
                      batch: dict[tuple[int, int], Polytope] | None = None) -> Polytope | None:
        """The exact intersection in part i's frame (convex polytope or boolean), cached."""
        if batch and (i, j) in batch:
            return batch[i, j]
        gi, gj = self._geom[i], self._geom[j]
        if not (gi.mesh.closed and gj.mesh.closed):
            return None
        key, rel = self._relative(i, j)
        hit = self._cached_solid(key)
        if hit is not None:
            return hit
        solid: Polytope | None = None
        if self._use_convex and gi.convex is not None and gj.convex is not None:
            solid = intersect_many([(gi.convex, gj.convex, rel)])[0]
        if solid is None:
            solid = self._boolean(i, j, rel)
            if solid is None:
                return None
        self._keep_solid(key, solid)
        return solid

    def _boolean(self, i: int, j: int, rel: np.ndarray) -> Polytope | None:
        """The intersection by an exact manifold3d boolean, in part i's frame."""
        si, sj = self._geom[i].solid, self._geom[j].solid
        if si is None or sj is None:
            return None
        solid = si ^ sj.transform(np.ascontiguousarray(rel[:3, :4]))
        volume = float(solid.volume())
        if solid.is_empty() or volume <= 0:
            return _Boolean(0.0, 0.0, np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), None)
        mesh = solid.to_mesh64()
        verts = np.asarray(mesh.vert_properties)[:, :3]
        faces = np.asarray(mesh.tri_verts, dtype=np.int64)
        return _Boolean(volume, float(solid.surface_area()), verts, faces, _centroid(verts, faces))

    def _contains(self, outer: int, inner: int, tol: float) -> bool:
        """Whether part ``inner`` lies in the material of ``outer`` (their surfaces do not cross).

        Only possible when inner's box lies in outer's; then points of inner decide: inside
        every face plane of a convex outer, otherwise by their winding number (a part in a
        hole or cavity is outside the material and has winding number 0).
        """
        if not (self.parts[outer].mesh.closed and np.all(self.lo[outer] - tol <= self.lo[inner])
                and np.all(self.hi[inner] <= self.hi[outer] + tol)):
            return False
        _, rel = self._relative(outer, inner)
        verts = self._geom[inner].mesh.vertices
        pick = verts[np.linspace(0, len(verts) - 1, min(9, len(verts))).astype(int)]
        local = pick @ rel[:3, :3].T + rel[:3, 3]
        convex = self._geom[outer].convex
        if convex is not None:
            inside_all = np.all(local @ convex.planes[:, :3].T + convex.planes[:, 3] <= 1e-12 * convex.scale, axis=1)
            return bool(np.mean(inside_all) > 0.5)
        return inside(local, self._geom[outer].mesh.triangles)

    def _classify_many(self, pairs: list[tuple[int, int]], tol: float) -> list[PairResult]:
        """Classify pairs; the intersections of the convex crossing ones are built in one batch."""
        out: list[PairResult | None] = []
        todo: list[tuple[int, tuple, bool]] = []
        for i, j in pairs:
            key = (i, j, tol, self.poses[i].tobytes(), self.poses[j].tobytes())
            hit = self._cache.get(key) if self._cache_results else None
            if hit is None:
                todo.append((len(out), key, self.surfaces_cross(i, j)))
            out.append(hit)
        batch = self._convex_solids([pairs[k] for k, _, crossing in todo if crossing])
        for k, key, crossing in todo:
            i, j = pairs[k]
            result = self._classify(i, j, tol, crossing, batch)
            if self._cache_results:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[key] = result
            out[k] = result
        return [r for r in out if r is not None]

    def _classify(self, i: int, j: int, tol: float, crossing: bool,
                  batch: dict[tuple[int, int], Polytope]) -> PairResult:
        check_time("classifying pairs of parts")
        if crossing:
            return self._overlapping(i, j, tol, batch)
        for outer, inner in ((i, j), (j, i)):
            if self._contains(outer, inner, tol):
                return self._overlapping(i, j, tol, batch, (outer, inner))
        d, pa, pb = self.distance(i, j)
        if d > tol:
            return PairResult(self.names[i], self.names[j], "clear", d, pa, pb, tolerance_m=tol)
        return self._touching(i, j, tol, d, pa, pb)

    def _touching(self, i: int, j: int, tol: float, d: float, pa: np.ndarray | None,
                  pb: np.ndarray | None, overlap: tuple[float, float, Polytope] | None = None,
                  crossing: bool = False) -> PairResult:
        """A pair within the tolerance: the contact region, points on both surfaces, the triangles.

        ``crossing`` when the surfaces cross (flush faces, or an overlap thinner than the tolerance);
        ``overlap`` (volume, depth, solid) when they share volume.
        """
        _, rel = self._relative(i, j)
        fa, ta, fb, tb = near_faces(self._geom[i], self._geom[j], rel, tol)
        near = near_features(ta, tb, tol, (self._geom[i].mesh.faces[fa], self._geom[j].mesh.faces[fb]))
        qa, qb = near.points_a, near.points_b
        faces_a, faces_b = fa[near.faces_a], fb[near.faces_b]
        if crossing:
            pairs = self._crossing_pairs(i, j, self.poses[i], self.poses[j])
            cross = crossing_points(self._geom[i].mesh.triangles[pairs[:, 0]],
                                    moved(self._geom[j].mesh.triangles[pairs[:, 1]], rel))
            qa, qb = np.concatenate([qa, cross]), np.concatenate([qb, cross])
            faces_a = np.union1d(faces_a, pairs[:, 0])
            faces_b = np.union1d(faces_b, pairs[:, 1])
        pose = self.poses[i]
        qa, qb = moved(qa, pose), moved(qb, pose)
        if len(qa):
            lo, hi = np.minimum(qa.min(axis=0), qb.min(axis=0)), np.maximum(qa.max(axis=0), qb.max(axis=0))
            if pa is None or pb is None or d == 0.0:
                k = int(np.argmin(np.linalg.norm(qa - qb, axis=1)))
                pa, pb = qa[k], qb[k]
        elif pa is not None and pb is not None:  # the features agree with fcl up to rounding
            qa, qb = pa[None], pb[None]
            lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        else:
            lo, hi = np.maximum(self.lo[i], self.lo[j]), np.minimum(self.hi[i], self.hi[j])
        pick = spread(qa)
        found = Contact(qa[pick], qb[pick], faces_a, faces_b)
        volume = depth = centroid = None
        note = ""
        if overlap is not None:
            volume, depth, solid = overlap
            centroid = None if solid.centroid is None else moved(solid.centroid, pose)
            note = (f"the surfaces overlap by {_length(depth)} (2V/S), less than the tolerance "
                    f"{_length(tol)}; a smaller tolerance reports the pair as interfering")
        return PairResult(self.names[i], self.names[j], "touching", d, pa, pb, volume, centroid, depth,
                          lo, hi, note, tolerance_m=tol, contact_of=lambda: found)

    def _overlapping(self, i: int, j: int, tol: float, batch: dict[tuple[int, int], Polytope],
                     contained: tuple[int, int] | None = None) -> PairResult:
        """A pair whose solids share volume: interfering, or touching if the overlap is thinner than tol."""
        a, b = self.names[i], self.names[j]
        pa = pb = None
        note = ""
        if contained is not None:
            outer, inner = contained
            d, pa, pb = self.distance(i, j)
            note = (f"{self.names[inner]} lies inside the material of {self.names[outer]}, "
                    f"{_length(d)} from its surface")
        poses = (self.poses[i].copy(), self.poses[j].copy())
        shared = self._shared_solid(i, j, batch)
        if shared is None:
            open_part = a if not self.parts[i].mesh.closed else b
            note = note or f"surfaces cross; the shared volume is unknown because {open_part} is not closed"
            closed = [k for k in (i, j) if self.parts[k].mesh.closed]
            depth = None
            if contained is None and len(closed) == 1:  # an open part's surface against a closed part
                depth = self._open_depth(i + j - closed[0], closed[0])
                reach = f"its surface reaches {_length(depth)} into {self.names[closed[0]]}"
                if depth <= tol:
                    flush = self._touching(i, j, tol, 0.0, None, None, crossing=True)
                    return replace(flush, note=f"{open_part} is not closed; {reach}, within the tolerance "
                                               f"{_length(tol)}")
                note += f"; {reach}"
            return PairResult(a, b, "interfering", 0.0, pa, pb, depth_m=depth, note=note, tolerance_m=tol,
                              contact_of=lambda: self._overlap_contact(i, j, poses, contained))
        pose = self.poses[i]
        volume, area = shared.volume, shared.area
        depth = 2.0 * volume / area if area > 0 else 0.0
        if depth <= tol and contained is None:
            return self._touching(i, j, tol, 0.0, None, None, (volume, depth, shared) if volume > 0 else None,
                                  crossing=volume > 0)
        lo = hi = centroid = None
        if len(shared.vertices):
            world = pose[:3, :3] @ shared.vertices.T  # (3, n): reductions along rows are fast
            lo, hi = world.min(axis=1) + pose[:3, 3], world.max(axis=1) + pose[:3, 3]
        if shared.centroid is not None:
            centroid = moved(shared.centroid, pose)
        overlap = shared.vertices if volume > 0 else None
        return PairResult(a, b, "interfering", 0.0, pa, pb, volume, centroid, depth, lo, hi, note,
                          (shared, pose.copy()) if volume > 0 else None, tolerance_m=tol,
                          contact_of=lambda: self._overlap_contact(i, j, poses, contained, overlap))

    def _open_depth(self, open_k: int, closed_k: int) -> float:
        """How deep (m) the surface of open part ``open_k`` reaches into closed part ``closed_k`` (they cross)."""
        _, rel = self._relative(open_k, closed_k)
        pairs = self._crossing_pairs(open_k, closed_k, self.poses[open_k], self.poses[closed_k], points=False)
        return surface_depth(self._geom[open_k], self._geom[closed_k], self._geom[closed_k].bvh, rel, pairs)

    def _overlap_contact(self, i: int, j: int, poses: tuple[np.ndarray, np.ndarray],
                         contained: tuple[int, int] | None, overlap: np.ndarray | None = None) -> Contact:
        """Faces of each part that cross the other's surface or lie inside it, and points on them.

        For a part inside the other: all its faces and points spread over it; none of the other's.
        ``overlap``: points of the shared solid that span it (i's frame), when known; faces
        inside the other part lie within their box.
        """
        gi, gj = self._geom[i], self._geom[j]
        if contained is not None:
            inner = contained[1]
            verts = self._geom[inner].mesh.vertices
            pts = moved(verts[spread(verts)], poses[0 if inner == i else 1])
            every = np.arange(len(self._geom[inner].mesh.faces))
            empty = np.zeros((0, 3))
            return Contact(pts, empty, every, NO_FACES) if inner == i else Contact(empty, pts, NO_FACES, every)
        rel = inverse(poses[0]) @ poses[1]  # j in i's frame
        pairs = self._crossing_pairs(i, j, *poses, points=False)
        cross = crossing_points(gi.mesh.triangles[pairs[:, 0]], moved(gj.mesh.triangles[pairs[:, 1]], rel))
        region_a = region_b = None
        if overlap is not None and len(overlap):
            region_a = overlap.min(axis=0), overlap.max(axis=0)
            in_j = moved(overlap, inverse(rel))
            region_b = in_j.min(axis=0), in_j.max(axis=0)
        in_a = inside_faces(gi, gj, rel, pairs[:, 0], region_a)
        in_b = inside_faces(gj, gi, inverse(rel), pairs[:, 1], region_b)
        qa = np.concatenate([cross, gi.mesh.vertices[np.unique(gi.mesh.faces[in_a])]])
        qb = np.concatenate([cross, moved(gj.mesh.vertices[np.unique(gj.mesh.faces[in_b])], rel)])
        qa, qb = moved(qa[spread(qa)], poses[0]), moved(qb[spread(qb)], poses[0])
        return Contact(qa, qb, np.union1d(pairs[:, 0], in_a), np.union1d(pairs[:, 1], in_b))

    def check(self, tolerance: float = DEFAULT_TOLERANCE_M) -> list[PairResult]:
        """Every pair that touches or interferes (pairs not listed are clear)."""
        return [r for r in self._classify_many(self.candidate_pairs(tolerance), tolerance)
                if r.status != "clear"]

    def clearances(self, threshold: float, tolerance: float = DEFAULT_TOLERANCE_M) -> list[PairResult]:
        """Every pair that interferes, touches or is closer than ``threshold`` (m), worst first.

        The same classification as ``check``; clear pairs carry the minimum distance and
        the two closest points.
        """
        found = self._classify_many(self.candidate_pairs(max(threshold, tolerance)), tolerance)
        return sorted((r for r in found if r.status != "clear" or r.distance_m <= threshold), key=severity)

    def min_clearance(self, tolerance: float = DEFAULT_TOLERANCE_M) -> PairResult | None:
        """The worst pair of the whole assembly: the deepest interfering, else the closest.

        Pairs whose boxes come within the tolerance are classified as in ``check``; the
        rest can only be clear and are searched by branch and bound on their box gaps.
        """
        if len(self.parts) < 2:
            return None
        near = self._classify_many(self.candidate_pairs(tolerance), tolerance)
        best = min(near, key=severity, default=None)
        if best is not None and best.status != "clear":
            return best
        i, j, lb = self.aabb_gaps()
        order = np.argsort(lb, kind="stable")
        for k in order[np.searchsorted(lb[order], tolerance, side="right"):]:
            if best is not None and lb[k] > best.distance_m:
                break
            d, pa, pb = self.distance(int(i[k]), int(j[k]))
            if best is None or d < best.distance_m:
                best = PairResult(self.names[i[k]], self.names[j[k]], "clear", d, pa, pb,
                                  tolerance_m=tolerance)
        return best

