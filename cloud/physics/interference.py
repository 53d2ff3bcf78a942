"""Interference and clearance between every pair of parts.

Broad phase: world-space AABBs of all parts, compared all-against-all with
numpy (a sort-free O(n²) test that is microseconds for hundreds of parts).
Narrow phase: python-fcl BVH (OBBRSS) models, built once per part in the
part frame and kept between queries; only the poses change. Interference
volume: exact booleans with manifold3d (double precision) in a frame centred
on the pair, so parts far from the origin lose no precision.

Classification, the way CAD interference detection reports it:
- ``interfering``: the solids share volume thicker than the tolerance
  (the intersection's mean thickness 2V/S > tolerance), or one contains the other;
- ``touching``: the surfaces are within the tolerance of each other but the
  shared volume (if any) is thinner than the tolerance;
- ``separated``: the minimum distance is larger than the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import fcl
import manifold3d
import numpy as np
from scipy.spatial import ConvexHull, QhullError

from cloud.physics.assembly import Part
from cloud.physics.geometry import winding_number

__all__ = ["CollisionWorld", "PairResult", "Status"]

Status = Literal["separated", "touching", "interfering"]
DEFAULT_TOLERANCE_M = 1e-5


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
    intersection: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)


def _bvh(part: Part) -> fcl.BVHModel:
    model = fcl.BVHModel()
    model.beginModel(len(part.mesh.vertices), len(part.mesh.faces))
    model.addSubModel(part.mesh.vertices, part.mesh.faces.astype(np.int32))
    model.endModel()
    return model


class CollisionWorld:
    """Acceleration structures for one assembly's parts; poses can be updated in place."""

    def __init__(self, parts: list[Part], *, cache_results: bool = True) -> None:
        self.parts = list(parts)
        self.names = [p.name for p in parts]
        self._models = [_bvh(p) for p in parts]
        self._objects = [fcl.CollisionObject(m, fcl.Transform()) for m in self._models]
        self._manifolds: dict[int, manifold3d.Manifold | None] = {}
        self._hull_pts = [self._support_points(p) for p in parts]
        self._cache: dict[tuple, PairResult] = {}
        self._cache_results = cache_results
        self.poses = np.stack([p.pose for p in parts])
        self.set_poses(self.poses)

    @staticmethod
    def _support_points(part: Part) -> np.ndarray:
        """Points whose transformed extent is the part's AABB: the convex hull vertices."""
        v = part.mesh.vertices
        if len(v) <= 64:
            return v
        try:
            return v[ConvexHull(v).vertices]
        except QhullError:
            return v

    def set_poses(self, poses: np.ndarray) -> None:
        """Move the parts: ``poses`` is (n, 4, 4) with translations in metres."""
        self.poses = np.asarray(poses, dtype=float)
        lo, hi = [], []
        for obj, pose, pts in zip(self._objects, self.poses, self._hull_pts, strict=True):
            obj.setTransform(fcl.Transform(pose[:3, :3], pose[:3, 3]))
            world = pts @ pose[:3, :3].T + pose[:3, 3]
            lo.append(world.min(axis=0))
            hi.append(world.max(axis=0))
        self.lo, self.hi = np.array(lo), np.array(hi)

    # --- broad phase ------------------------------------------------------------------
    def aabb_gaps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs i<j with the lower bound of their distance from the AABBs."""
        i, j = np.triu_indices(len(self.parts), k=1)
        gap = np.maximum(0.0, np.maximum(self.lo[j] - self.hi[i], self.lo[i] - self.hi[j]))
        return i, j, np.linalg.norm(gap, axis=1)

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
        req = fcl.DistanceRequest(enable_nearest_points=True)
        res = fcl.DistanceResult()
        d = max(float(fcl.distance(self._objects[i], self._objects[j], req, res)), 0.0)
        pa, pb = np.array(res.nearest_points[0]), np.array(res.nearest_points[1])
        if d == 0.0:  # fcl gives no witness points for contact: take a contact point instead
            contacts = fcl.CollisionResult()
            fcl.collide(self._objects[i], self._objects[j],
                        fcl.CollisionRequest(num_max_contacts=1, enable_contact=True), contacts)
            pa = pb = np.array(contacts.contacts[0].pos) if contacts.contacts else None
        return d, pa, pb

    def surfaces_cross(self, i: int, j: int) -> bool:
        return bool(fcl.collide(self._objects[i], self._objects[j], fcl.CollisionRequest(),
                                fcl.CollisionResult()))

    def _manifold(self, i: int) -> manifold3d.Manifold | None:
        if i not in self._manifolds:
            mesh = self.parts[i].mesh
            solid = None
            if mesh.closed:
                solid = manifold3d.Manifold(manifold3d.Mesh64(
                    vert_properties=np.ascontiguousarray(mesh.vertices, dtype=np.float64),
                    tri_verts=np.ascontiguousarray(mesh.faces, dtype=np.uint32)))
                if solid.status() != manifold3d.Error.NoError:
                    solid = None
            self._manifolds[i] = solid
        return self._manifolds[i]

    def intersection(self, i: int, j: int) -> tuple[float, float, np.ndarray, np.ndarray] | None:
        """(volume m³, surface m², vertices, faces) of the shared solid in world frame, or None."""
        mi, mj = self._manifold(i), self._manifold(j)
        if mi is None or mj is None:
            return None
        centre = 0.5 * (np.maximum(self.lo[i], self.lo[j]) + np.minimum(self.hi[i], self.hi[j]))

        def placed(m: manifold3d.Manifold, pose: np.ndarray) -> manifold3d.Manifold:
            local = pose.copy()
            local[:3, 3] -= centre
            return m.transform(np.ascontiguousarray(local[:3, :4]))

        shared = placed(mi, self.poses[i]) ^ placed(mj, self.poses[j])
        volume = float(shared.volume())
        if shared.is_empty() or volume <= 0:
            return 0.0, 0.0, np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
        out = shared.to_mesh64()
        verts = np.asarray(out.vert_properties)[:, :3] + centre
        return volume, float(shared.surface_area()), verts, np.asarray(out.tri_verts, dtype=np.int64)

    def _contains(self, outer: int, inner: int) -> bool:
        if not (self.parts[outer].mesh.closed and np.all(self.lo[outer] <= self.lo[inner])
                and np.all(self.hi[inner] <= self.hi[outer])):
            return False
        pose_o, pose_i = self.poses[outer], self.poses[inner]
        point = pose_i[:3, :3] @ self.parts[inner].mesh.vertices[0] + pose_i[:3, 3]
        local = pose_o[:3, :3].T @ (point - pose_o[:3, 3])
        return abs(winding_number(local[None], self.parts[outer].mesh.triangles)[0]) > 0.5

    def classify(self, i: int, j: int, tolerance: float) -> PairResult:
        """Separated, touching or interfering, with distance, points, volume and region."""
        key = (i, j, tolerance, self.poses[i].tobytes(), self.poses[j].tobytes())
        if self._cache_results and key in self._cache:
            return self._cache[key]
        result = self._classify(i, j, tolerance)
        if self._cache_results:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = result
        return result

    def _classify(self, i: int, j: int, tol: float) -> PairResult:
        a, b = self.names[i], self.names[j]
        crossing = self.surfaces_cross(i, j)
        if not crossing:
            d, pa, pb = self.distance(i, j)
            for outer, inner in ((i, j), (j, i)):
                if self._contains(outer, inner):
                    note = f"{self.names[inner]} lies inside {self.names[outer]}"
                    return self._interfering(i, j, pa, pb, note, tol)
            status: Status = "touching" if d <= tol else "separated"
            if pa is None:
                lo, hi = np.maximum(self.lo[i], self.lo[j]), np.minimum(self.hi[i], self.hi[j])
            else:
                lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
            return PairResult(a, b, status, d, pa, pb, region_min_m=lo, region_max_m=hi)
        return self._interfering(i, j, None, None, "", tol)

    def _interfering(self, i: int, j: int, pa: np.ndarray | None, pb: np.ndarray | None,
                     note: str, tol: float) -> PairResult:
        a, b = self.names[i], self.names[j]
        shared = self.intersection(i, j)
        if shared is None:
            open_part = a if not self.parts[i].mesh.closed else b
            return PairResult(a, b, "interfering", 0.0, pa, pb, note=(
                f"surfaces cross; the shared volume is unknown because {open_part} is not closed"))
        volume, area, verts, faces = shared
        depth = 2.0 * volume / area if area > 0 else 0.0
        if verts.size:
            lo, hi = verts.min(axis=0), verts.max(axis=0)
            centroid = _centroid(verts, faces)
        else:
            lo = hi = centroid = None
        if depth <= tol and not note:
            note = "surfaces overlap by less than the tolerance" if volume > 0 else ""
            return PairResult(a, b, "touching", 0.0, pa, pb, volume, centroid, depth, lo, hi,
                              note, (verts, faces))
        return PairResult(a, b, "interfering", 0.0, pa, pb, volume, centroid, depth, lo, hi,
                          note, (verts, faces))

    def check(self, tolerance: float = DEFAULT_TOLERANCE_M) -> list[PairResult]:
        """Every pair that touches or interferes (pairs not listed are separated)."""
        out = []
        for i, j in self.candidate_pairs(tolerance):
            res = self.classify(i, j, tolerance)
            if res.status != "separated":
                out.append(res)
        return out

    def clearances(self, threshold: float) -> list[PairResult]:
        """Every pair closer than ``threshold`` (m): distance and the two closest points, nearest first."""
        out = []
        for i, j in self.candidate_pairs(threshold):
            d, pa, pb = self.distance(i, j)
            if d <= threshold:
                out.append(PairResult(self.names[i], self.names[j],
                                      "touching" if d == 0 else "separated", d, pa, pb))
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
                                  "touching" if d == 0 else "separated", d, pa, pb)
                if d == 0.0:
                    break
        return best


def _centroid(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = verts[faces] - verts.mean(axis=0)
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    if abs(vol.sum()) < 1e-300:
        return verts.mean(axis=0)
    return (vol[:, None] * tri.sum(axis=1)).sum(axis=0) / (4.0 * vol.sum()) + verts.mean(axis=0)
