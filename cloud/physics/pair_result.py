"""One pair's answer: its state (interfering / touching / clear), distances, overlap and contact, in SI.

``PairResult`` is what ``CollisionWorld`` classifies a pair into and what the reports, the picture and
the store read; ``severity`` orders pairs worst first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from cloud.physics.contact import NO_CONTACT, Contact
from cloud.physics.polytope import Polytope
from cloud.physics.units import DEFAULT_TOLERANCE_M

__all__ = ["PairResult", "Status", "severity"]

Status = Literal["clear", "touching", "interfering"]


@dataclass(frozen=True, eq=False)
class PairResult:
    """One pair's classification; points and volumes in SI, world frame.

    The contact details (points on each surface, triangles in contact or overlap)
    of an interfering pair are worked out when first read: a check that only
    needs states and volumes does not pay for them.
    """

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
    tolerance_m: float = DEFAULT_TOLERANCE_M
    contact_of: Callable[[], Contact] | None = field(default=None, repr=False)

    @cached_property
    def contact(self) -> Contact:
        """Points on each surface in the contact/overlap region and the triangles there."""
        return NO_CONTACT if self.contact_of is None else self.contact_of()

    @property
    def points_a_m(self) -> np.ndarray | None:
        """(k, 3) points on a's surface in the region (k <= 64); None for clear pairs."""
        return None if self.status == "clear" else self.contact.points_a

    @property
    def points_b_m(self) -> np.ndarray | None:
        return None if self.status == "clear" else self.contact.points_b

    @property
    def faces_a(self) -> np.ndarray:
        """a's triangles within the tolerance of b, crossing b's surface, or inside b."""
        return self.contact.faces_a

    @property
    def faces_b(self) -> np.ndarray:
        return self.contact.faces_b

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


_RANK = {"interfering": 0, "touching": 1, "clear": 2}


def severity(r: PairResult) -> tuple[int, float, str, str]:
    """Sort key, worst first: interfering (deepest first; unknown depth first), touching, clear (nearest first)."""
    if r.status == "interfering":
        return (0, -(np.inf if r.depth_m is None else r.depth_m), r.a, r.b)
    return (_RANK[r.status], r.distance_m, r.a, r.b)
