"""Assembly mates: their JSON model and their residual equations.

A mate relates features of two parts (or a part and the world). Features are
given in the part's own frame and unit: a point (``origin``), a plane
(``origin`` + outward ``direction``), an axis (``origin`` + ``direction``) or a
cylinder (an axis + ``radius``). Each mate becomes a few scalar equations
r(poses) = 0 with an analytic Jacobian for small rotations δθ (world frame)
and translations δt of each part; the solver and the DOF analysis use them.

Residuals are dimensionless: lengths are divided by the assembly's
characteristic length L, directions are unit vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FeatureSpec", "MateEquations", "MateSpec", "mate_equations"]

Vec3 = tuple[float, float, float]
MateType = Literal[
    "coincident", "concentric", "parallel", "perpendicular", "distance", "angle", "tangent", "fixed"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """A geometric feature of a part, in the part's frame and unit (world frame if ``part`` is null)."""

    part: str | None = Field(None, description="part name; null means the fixed world frame")
    kind: Literal["point", "plane", "axis", "cylinder"]
    origin: Vec3 = Field((0.0, 0.0, 0.0), description="a point of the feature, in the part's unit")
    direction: Vec3 | None = Field(
        None, description="plane normal (outward) or axis direction; unitless, normalised"
    )
    radius: float | None = Field(None, gt=0, description="cylinder radius, in the part's unit")

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if self.kind != "point":
            if self.direction is None:
                raise ValueError(f"a {self.kind} needs a direction")
            if not np.isfinite(self.direction).all() or np.linalg.norm(self.direction) < 1e-12:
                raise ValueError("direction must be a finite non-zero vector")
        if self.kind == "cylinder" and self.radius is None:
            raise ValueError("a cylinder needs a radius")
        if not np.isfinite(self.origin).all():
            raise ValueError("origin must be finite")
        return self


class MateSpec(_Strict):
    """One mate between features ``a`` and ``b``. Distances in the assembly unit, angles in degrees."""

    name: str | None = None
    type: MateType
    a: FeatureSpec
    b: FeatureSpec | None = Field(None, description="second feature; for 'fixed', null = the world")
    distance: float | None = Field(None, description="for 'distance', in the assembly's unit")
    angle_deg: float | None = Field(None, ge=0, le=180, description="for 'angle', degrees")
    alignment: Literal["aligned", "anti-aligned", "any"] | None = Field(
        None, description="direction sense; default anti-aligned for plane-plane coincident, else any"
    )

    @model_validator(mode="after")
    def _check(self) -> MateSpec:
        kinds = (self.a.kind, self.b.kind if self.b else None)
        if self.type != "fixed" and self.b is None:
            raise ValueError(f"a {self.type} mate needs two features (a and b)")
        if self.type == "distance" and (self.distance is None or not np.isfinite(self.distance)):
            raise ValueError("a distance mate needs a finite 'distance'")
        if self.type == "angle" and self.angle_deg is None:
            raise ValueError("an angle mate needs 'angle_deg'")
        allowed = _ALLOWED.get(self.type)
        if allowed is not None and frozenset(kinds) not in allowed and tuple(kinds) not in allowed:
            raise ValueError(f"a {self.type} mate cannot join a {kinds[0]} and a {kinds[1]}")
        return self


_LINE = {"plane", "axis", "cylinder"}
_ALLOWED: dict[str, set[object]] = {
    "coincident": {frozenset({"point"}), frozenset({"point", "plane"}), frozenset({"plane"}),
                   frozenset({"point", "axis"}), frozenset({"point", "cylinder"})},
    "concentric": {frozenset({"axis"}), frozenset({"cylinder"}), frozenset({"axis", "cylinder"})},
    "parallel": {frozenset({x, y}) for x in _LINE for y in _LINE},
    "perpendicular": {frozenset({x, y}) for x in _LINE for y in _LINE},
    "angle": {frozenset({x, y}) for x in _LINE for y in _LINE},
    "distance": {frozenset({"point"}), frozenset({"point", "plane"}), frozenset({"plane"})},
    "tangent": {frozenset({"plane", "cylinder"})},
}


@dataclass
class WorldFeature:
    """A feature evaluated at the current poses: world point/direction and their Jacobians.

    ``jp``/``jd`` are (3, 6) blocks for the owning part's variables [δt/L, δθ];
    ``owner`` is the index of the free part or -1 for grounded features.
    """

    kind: str
    p: np.ndarray
    d: np.ndarray
    radius: float
    owner: int
    jp: np.ndarray
    jd: np.ndarray


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def world_feature(kind: str, origin: np.ndarray, direction: np.ndarray, radius: float,
                  rot: np.ndarray, trans: np.ndarray, owner: int) -> WorldFeature:
    """Evaluate a part-frame feature (lengths already divided by L) at pose (rot, trans/L)."""
    lever = rot @ origin
    d = rot @ direction
    jp = np.zeros((3, 6))
    jd = np.zeros((3, 6))
    if owner >= 0:
        jp[:, :3] = np.eye(3)
        jp[:, 3:] = -_skew(lever)
        jd[:, 3:] = -_skew(d)
    return WorldFeature(kind, lever + trans, d, radius, owner, jp, jd)


@dataclass
class MateEquations:
    """Residuals (k,) and Jacobian blocks: list of (owner, (k, 6)) for each involved free part."""

    r: np.ndarray
    blocks: list[tuple[int, np.ndarray]]
    angular: np.ndarray  # which rows are direction (rad-like) residuals, for reporting


def _pack(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]],
          fa: WorldFeature, fb: WorldFeature) -> MateEquations:
    """rows: (residual (k,), d/d(a vars) (k,6), d/d(b vars) (k,6), angular)."""
    r = np.concatenate([x[0] for x in rows])
    ja = np.vstack([x[1] for x in rows])
    jb = np.vstack([x[2] for x in rows])
    ang = np.concatenate([np.full(len(x[0]), x[3]) for x in rows])
    blocks = []
    if fa.owner >= 0:
        blocks.append((fa.owner, ja))
    if fb.owner >= 0:
        if fb.owner == fa.owner:
            blocks[-1] = (fa.owner, ja + jb)
        else:
            blocks.append((fb.owner, jb))
    return MateEquations(r, blocks, ang)


def _cross_rows(fa: WorldFeature, fb: WorldFeature, sign: float | None):
    """Direction alignment: d_a × d_b (any sense) or d_a - sign·d_b."""
    if sign is None:
        r = np.cross(fa.d, fb.d)
        return (r, -_skew(fb.d) @ fa.jd, _skew(fa.d) @ fb.jd, True)
    return (fa.d + sign * fb.d, fa.jd, sign * fb.jd, True)


def _dot_row(u: np.ndarray, ju: np.ndarray, v: np.ndarray, jv: np.ndarray):
    """u·v and its derivatives w.r.t. the variables of u's owner and of v's owner."""
    return float(u @ v), v @ ju, u @ jv


def mate_equations(spec: MateSpec, fa: WorldFeature, fb: WorldFeature, scale: float,
                   rel: tuple[np.ndarray, np.ndarray] | None = None) -> MateEquations:
    """Residuals of one mate. ``scale`` is L (m per unit of solver length); ``rel`` for 'fixed'."""
    kinds = {fa.kind, fb.kind}
    t = spec.type
    sense = {"aligned": -1.0, "anti-aligned": 1.0, "any": None}
    rows = []
    if t == "fixed":
        return _fixed(fa, fb, rel)
    if t == "coincident" and kinds == {"point"}:
        rows.append((fb.p - fa.p, -fa.jp, fb.jp, False))
    elif t in ("coincident", "distance") and "point" in kinds and kinds & {"plane"}:
        pt, pl = (fa, fb) if fa.kind == "point" else (fb, fa)
        target = (spec.distance or 0.0) / scale if t == "distance" else 0.0
        diff = pt.p - pl.p
        r = float(pl.d @ diff) - target
        jpt = pl.d @ pt.jp
        jpl = diff @ pl.jd - pl.d @ pl.jp
        ja, jb = (jpt, jpl) if fa is pt else (jpl, jpt)
        rows.append((np.array([r]), ja[None], jb[None], False))
    elif t == "coincident" and "point" in kinds:  # point on axis / cylinder axis
        pt, ax = (fa, fb) if fa.kind == "point" else (fb, fa)
        rows.append(_on_axis(pt, ax, fa is pt))
    elif t in ("coincident", "distance") and kinds == {"plane"}:
        default = "anti-aligned" if t == "coincident" else "any"
        rows.append(_cross_rows(fa, fb, sense[spec.alignment or default]))
        target = (spec.distance or 0.0) / scale if t == "distance" else 0.0
        diff = fb.p - fa.p
        r = float(fa.d @ diff) - target
        rows.append((np.array([r]), (diff @ fa.jd - fa.d @ fa.jp)[None], (fa.d @ fb.jp)[None], False))
    elif t == "distance":  # point-point
        diff = fb.p - fa.p
        n = float(np.linalg.norm(diff))
        u = diff / n if n > 1e-15 else np.array([1.0, 0.0, 0.0])
        rows.append((np.array([n - spec.distance / scale]), (-u @ fa.jp)[None], (u @ fb.jp)[None], False))
    elif t == "concentric":
        rows.append(_cross_rows(fa, fb, sense[spec.alignment or "any"]))
        rows.append(_on_axis(fb, fa, False))
    elif t == "parallel":
        rows.append(_cross_rows(fa, fb, sense[spec.alignment or "any"]))
    elif t in ("perpendicular", "angle"):
        target = 0.0 if t == "perpendicular" else float(np.cos(np.radians(spec.angle_deg or 0.0)))
        r, ja, jb = _dot_row(fa.d, fa.jd, fb.d, fb.jd)
        rows.append((np.array([r - target]), ja[None], jb[None], True))
    elif t == "tangent":
        pl, cy = (fa, fb) if fa.kind == "plane" else (fb, fa)
        r1, j1, j2 = _dot_row(pl.d, pl.jd, cy.d, cy.jd)
        diff = cy.p - pl.p
        r2 = float(pl.d @ diff) - cy.radius
        jpl2, jcy2 = diff @ pl.jd - pl.d @ pl.jp, pl.d @ cy.jp
        first = fa is pl
        rows.append((np.array([r1]), (j1 if first else j2)[None], (j2 if first else j1)[None], True))
        rows.append((np.array([r2]), (jpl2 if first else jcy2)[None],
                     (jcy2 if first else jpl2)[None], False))
    else:  # pragma: no cover - the model validator refuses other combinations
        raise ValueError(f"unsupported mate {t} between {kinds}")
    return _pack(rows, fa, fb)


def _on_axis(pt: WorldFeature, ax: WorldFeature, pt_is_a: bool):
    """(I - d dᵀ)(p - q): the point's offset from the axis line."""
    diff = pt.p - ax.p
    proj = np.eye(3) - np.outer(ax.d, ax.d)
    r = proj @ diff
    # d/dd of (I - d dᵀ) diff = -(d·diff) I - d diffᵀ
    dproj = -(ax.d @ diff) * np.eye(3) - np.outer(ax.d, diff)
    j_pt = proj @ pt.jp
    j_ax = -proj @ ax.jp + dproj @ ax.jd
    return (r, j_pt, j_ax, False) if pt_is_a else (r, j_ax, j_pt, False)


def _fixed(fa: WorldFeature, fb: WorldFeature, rel) -> MateEquations:
    """'fixed': part a keeps its pose relative to b (or the world). fa/fb carry the frame axes."""
    rel_rot, rel_t = rel
    rows = []
    # fa.p/fb.p are the part origins, frames via the three axes packed in .radius-less features
    axes_a, axes_b = fa.d.reshape(3, 3), fb.d.reshape(3, 3)
    for k in range(3):
        ua, ub = axes_a[:, k], axes_b @ rel_rot[:, k]
        ja = np.zeros((3, 6))
        jb = np.zeros((3, 6))
        ja[:, 3:] = -_skew(ua)
        jb[:, 3:] = -_skew(ub)
        rows.append((ua - ub, ja, -jb, True))
    target = axes_b @ rel_t
    jb = np.zeros((3, 6))
    jb[:, :3] = np.eye(3)
    jb[:, 3:] = -_skew(target)
    ja = np.zeros((3, 6))
    ja[:, :3] = np.eye(3)
    rows.append((fa.p - (fb.p + target), ja, -jb, False))
    return _pack(rows, fa, fb)
