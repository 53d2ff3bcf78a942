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
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import fcl
import manifold3d
import numpy as np
from scipy.spatial import ConvexHull, QhullError

from cloud.physics.assembly import Part
from cloud.physics.budget import check_time
from cloud.physics.convex import ConvexShape, convex_shape, intersect_many
from cloud.physics.geometry import winding_number
from cloud.physics.mesh import PartMesh
from cloud.physics.polytope import Polytope

__all__ = ["CollisionWorld", "PairResult", "Status"]

Status = Literal["clear", "touching", "interfering"]
DEFAULT_TOLERANCE_M = 1e-5
_NO_FACES = np.zeros(0, dtype=np.int64)
_MAX_CONTACTS = 100_000  # triangle pairs asked of fcl for the faces in contact


@dataclass(frozen=True, eq=False)
class PairResult:
    """One pair's classification; points and volumes in SI, world frame."""

    a: str
    b: str
    status: Status
    distance_m: float
    point_a_m: np.ndarray | None = None
    point_b_m: np.ndarray | None = None
    volume_m3: float | None = None
    centroid_m: np.ndarray | None = None
    depth_m: float | None = None
    region_min_m: np.ndarray | None = None
    region_max_m: np.ndarray | None = None
    note: str = ""
    shared: tuple[Polytope, np.ndarray] | None = field(default=None, repr=False)
    points_a_m: np.ndarray | None = field(default=None, repr=False)  # (k, 3) on a's surface in the region
    points_b_m: np.ndarray | None = field(default=None, repr=False)  # (k, 3) on b's surface in the region
    faces_a: np.ndarray = field(default_factory=lambda: _NO_FACES, repr=False)  # a's triangles in contact
    faces_b: np.ndarray = field(default_factory=lambda: _NO_FACES, repr=False)  # b's triangles in contact

    @property
    def extent_m(self) -> np.ndarray | None:
        """Size of the contact/overlap region's box along x, y, z (m)."""
        if self.region_min_m is None or self.region_max_m is None:
            return None
        return self.region_max_m - self.region_min_m

    @cached_property
    def intersection(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The shared solid as a world-frame triangle mesh (vertices, faces), built when asked."""
        if self.shared is None:
            return None
        solid, pose = self.shared
        verts, faces = solid.mesh
        return verts @ pose[:3, :3].T + pose[:3, 3], faces


_HULL_ABOVE = 4096  # vertices; smaller meshes use every vertex for their AABB (qhull costs more)
_SHARED_CACHE = 4096  # intersection solids kept per world (least recently used dropped)


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
        if len(v) <= _HULL_ABOVE:
            return v
        try:
            return v[ConvexHull(v).vertices]
        except QhullError:
            return v

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
        result = fcl.CollisionResult()
        fcl.collide(self._object(i), self._object(j),
                    fcl.CollisionRequest(num_max_contacts=_MAX_CONTACTS, enable_contact=True), result)
        if not result.contacts:
            return _NO_FACES, _NO_FACES
        pairs = np.array([(c.b1, c.b2) for c in result.contacts], dtype=np.int64)
        return np.unique(pairs[:, 0]), np.unique(pairs[:, 1])

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

    def _contains(self, outer: int, inner: int) -> bool:
        if not (self.parts[outer].mesh.closed and np.all(self.lo[outer] <= self.lo[inner])
                and np.all(self.hi[inner] <= self.hi[outer])):
            return False
        pose_o, pose_i = self.poses[outer], self.poses[inner]
        point = pose_i[:3, :3] @ self.parts[inner].mesh.vertices[0] + pose_i[:3, 3]
        local = pose_o[:3, :3].T @ (point - pose_o[:3, 3])
        return abs(winding_number(local[None], self.parts[outer].mesh.triangles)[0]) > 0.5

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
        a, b = self.names[i], self.names[j]
        if not crossing:
            d, pa, pb = self.distance(i, j)
            for outer, inner in ((i, j), (j, i)):
                if self._contains(outer, inner):
                    note = f"{self.names[inner]} lies inside {self.names[outer]}"
                    return self._interfering(i, j, pa, pb, note, tol, batch)
            status: Status = "touching" if d <= tol else "clear"
            if pa is None or pb is None:
                lo, hi = np.maximum(self.lo[i], self.lo[j]), np.minimum(self.hi[i], self.hi[j])
            else:
                lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
            return PairResult(a, b, status, d, pa, pb, region_min_m=lo, region_max_m=hi)
        return self._interfering(i, j, None, None, "", tol, batch)

    def _interfering(self, i: int, j: int, pa: np.ndarray | None, pb: np.ndarray | None,
                     note: str, tol: float, batch: dict[tuple[int, int], Polytope]) -> PairResult:
        a, b = self.names[i], self.names[j]
        shared = self._shared_solid(i, j, batch)
        if shared is None:
            open_part = a if not self.parts[i].mesh.closed else b
            return PairResult(a, b, "interfering", 0.0, pa, pb, note=(
                f"surfaces cross; the shared volume is unknown because {open_part} is not closed"))
        pose = self.poses[i]
        volume, area = shared.volume, shared.area
        depth = 2.0 * volume / area if area > 0 else 0.0
        lo = hi = centroid = None
        if len(shared.vertices):
            world = pose[:3, :3] @ shared.vertices.T  # (3, n): reductions along rows are fast
            lo, hi = world.min(axis=1) + pose[:3, 3], world.max(axis=1) + pose[:3, 3]
        if shared.centroid is not None:
            centroid = pose[:3, :3] @ shared.centroid + pose[:3, 3]
        status: Status = "interfering"
        if depth <= tol and not note:
            note = "surfaces overlap by less than the tolerance" if volume > 0 else ""
            status = "touching"
        faces_a, faces_b = self.crossing_faces(i, j)
        return PairResult(a, b, status, 0.0, pa, pb, volume, centroid, depth, lo, hi, note,
                          (shared, pose) if volume > 0 else None, faces_a=faces_a, faces_b=faces_b)

    def check(self, tolerance: float = DEFAULT_TOLERANCE_M) -> list[PairResult]:
        """Every pair that touches or interferes (pairs not listed are clear)."""
        return [r for r in self._classify_many(self.candidate_pairs(tolerance), tolerance)
                if r.status != "clear"]

    def clearances(self, threshold: float) -> list[PairResult]:
        """Every pair closer than ``threshold`` (m): distance and the two closest points, nearest first."""
        out = []
        for i, j in self.candidate_pairs(threshold):
            d, pa, pb = self.distance(i, j)
            if d <= threshold:
                out.append(PairResult(self.names[i], self.names[j],
                                      "touching" if d == 0 else "clear", d, pa, pb))
        return sorted(out, key=lambda r: r.distance_m)

    def min_clearance(self) -> PairResult | None:
        """The closest pair of the whole assembly (branch and bound on AABB lower bounds)."""
        if len(self.parts) < 2:
            return None
        i, j, lb = self.aabb_gaps()
        order = np.argsort(lb, kind="stable")
        best: PairResult | None = None
        for k in order:
            if best is not None and lb[k] > best.distance_m:
                break
            d, pa, pb = self.distance(int(i[k]), int(j[k]))
            if best is None or d < best.distance_m:
                best = PairResult(self.names[i[k]], self.names[j[k]],
                                  "touching" if d == 0 else "clear", d, pa, pb)
                if d == 0.0:
                    break
        return best


def _centroid(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = verts[faces] - verts.mean(axis=0)
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    if abs(vol.sum()) < 1e-300:
        return verts.mean(axis=0)
    return (vol[:, None] * tri.sum(axis=1)).sum(axis=0) / (4.0 * vol.sum()) + verts.mean(axis=0)
