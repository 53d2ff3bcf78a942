"""Mate equations compiled to arrays: every residual and the Jacobian of an assembly in a few numpy calls.

Each mate (see ``mates.py``) is split once into primitive equations between
two *features* (a point and/or a unit direction carried by a part):

=========  ==========================  ====  ========
primitive  residual                    rows  angular
=========  ==========================  ====  ========
PDIFF      p_b − p_a                   3     no
PLANE      d_q·(p_p − p_q) − target    1     no
ON_AXIS    (I − d_q d_qᵀ)(p_p − p_q)   3     no
CROSS      d_a × d_b                   3     yes
DSUM       d_a + s·d_b                 3     yes
DOT        d_a·d_b − target            1     yes
PDIST      |p_b − p_a| − target        1     no
=========  ==========================  ====  ========

Lengths are divided by the assembly length L. The variables of a free part
are [δt/L, δθ] (world-frame translation and small rotation, R ← exp(δθ)·R),
so a feature point moves by δt/L + δθ × (R·o) and a direction by δθ × d:
the rotation columns of a gradient g are (R·o) × g for points and d × g for
directions. Each equation row touches at most two parts (12 columns), which
the solver uses to form JᵀJ without dense products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.physics.errors import MateDefinitionError
from cloud.physics.mates import FeatureSpec, MateSpec, unknown_parts
from cloud.physics.units import METRES_PER, LengthUnit

__all__ = ["CompiledMates", "Evaluation"]

_KINDS = ("PDIFF", "PLANE", "ON_AXIS", "CROSS", "DSUM", "DOT", "PDIST")
_ROWS = {"PDIFF": 3, "PLANE": 1, "ON_AXIS": 3, "CROSS": 3, "DSUM": 3, "DOT": 1, "PDIST": 1}
_ANGULAR = {"CROSS", "DSUM", "DOT"}
_SENSE = {"aligned": -1.0, "anti-aligned": 1.0, "any": None}
_EYE = np.eye(3)


@dataclass
class Evaluation:
    """Residuals ``r`` (rows,) and Jacobian ``jac`` (rows, 6·n_free) at one set of poses."""

    r: np.ndarray
    jac: np.ndarray


@dataclass
class _Group:
    """All primitives of one kind: feature indices, constants and their first row."""

    a: np.ndarray
    b: np.ndarray
    target: np.ndarray
    row: np.ndarray


def _cross3(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """u × v over the last axis with broadcasting (np.cross is slow for many small arrays)."""
    u0, u1, u2 = u[..., 0], u[..., 1], u[..., 2]
    v0, v1, v2 = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0], axis=-1)


def _skew(v: np.ndarray) -> np.ndarray:
    """(m, 3) → (m, 3, 3) cross-product matrices."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


class CompiledMates:
    """The mates of an assembly as index arrays over features; evaluated for all mates at once.

    ``part_row`` maps part names to rows of the pose array, ``free_col`` maps the
    free parts to their variable block; ``units`` gives each part's length unit.
    """

    def __init__(self, mates: list[MateSpec], part_row: dict[str, int], free_col: dict[str, int],
                 units: dict[str, LengthUnit], assembly_unit: LengthUnit, length: float,
                 start: np.ndarray) -> None:
        problems = unknown_parts(mates, part_row)
        if problems:  # a request's own mates may name parts the assembly lacks
            raise MateDefinitionError(problems)
        self.length = length
        self.n_parts = len(part_row)
        self.n_cols = 6 * len(free_col)
        self._part_row, self._free_col, self._units = part_row, free_col, units
        self._assembly_unit = assembly_unit
        self._f_part: list[int] = []
        self._f_owner: list[int] = []
        self._f_origin: list[np.ndarray] = []
        self._f_dir: list[np.ndarray] = []
        prims: dict[str, list[tuple[int, int, float, int]]] = {k: [] for k in _KINDS}
        self.ranges: list[tuple[int, int]] = []
        angular: list[bool] = []
        row = 0
        for mate in mates:
            first = row
            for kind, fa, fb, target in self._primitives(mate, start):
                prims[kind].append((fa, fb, target, row))
                angular += [kind in _ANGULAR] * _ROWS[kind]
                row += _ROWS[kind]
            self.ranges.append((first, row))
        self.n_rows = row
        self.angular = np.array(angular, dtype=bool)
        self._origin = np.array(self._f_origin).reshape(-1, 3)
        self._dir = np.array(self._f_dir).reshape(-1, 3)
        self._fpart = np.array(self._f_part, dtype=np.intp)
        self._owner = np.array(self._f_owner, dtype=np.intp)
        self._groups = {
            k: _Group(np.array([p[0] for p in v], np.intp), np.array([p[1] for p in v], np.intp),
                      np.array([p[2] for p in v], float), np.array([p[3] for p in v], np.intp))
            for k, v in prims.items() if v
        }
        self._pattern()

    # --- compilation ----------------------------------------------------------------------
    def _add(self, part: str | None, origin: np.ndarray, direction: np.ndarray) -> int:
        self._f_part.append(self.n_parts if part is None else self._part_row[part])
        self._f_owner.append(-1 if part is None else self._free_col.get(part, -1))
        self._f_origin.append(np.asarray(origin, float))
        self._f_dir.append(np.asarray(direction, float))
        return len(self._f_part) - 1

    def _feature(self, feat: FeatureSpec) -> int:
        unit = self._assembly_unit if feat.part is None else self._units[feat.part]
        scale = METRES_PER[unit] / self.length
        direction = np.zeros(3)
        if feat.direction is not None:
            direction = np.asarray(feat.direction, float)
            direction = direction / np.linalg.norm(direction)
        return self._add(feat.part, np.asarray(feat.origin, float) * scale, direction)

    def _radius(self, feat: FeatureSpec) -> float:
        unit = self._assembly_unit if feat.part is None else self._units[feat.part]
        return (feat.radius or 0.0) * METRES_PER[unit] / self.length

    def _primitives(self, m: MateSpec, start: np.ndarray) -> list[tuple[str, int, int, float]]:
        """The primitive equations of one mate, in row order: (kind, feature a, feature b, target)."""
        if m.type == "fixed":
            return self._fixed(m, start)
        assert m.b is not None  # the model validator requires b for every other type
        fa, fb = self._feature(m.a), self._feature(m.b)
        kinds = {m.a.kind, m.b.kind}
        dist = (m.distance or 0.0) * METRES_PER[self._assembly_unit] / self.length
        t = m.type

        def align(default: str) -> tuple[str, int, int, float]:
            sign = _SENSE[m.alignment or default]
            return ("CROSS", fa, fb, 0.0) if sign is None else ("DSUM", fa, fb, sign)

        if t == "coincident" and kinds == {"point"}:
            return [("PDIFF", fa, fb, 0.0)]
        if t in ("coincident", "distance") and kinds == {"point", "plane"}:
            pt, pl = (fa, fb) if m.a.kind == "point" else (fb, fa)
            return [("PLANE", pt, pl, dist if t == "distance" else 0.0)]
        if t == "coincident" and "point" in kinds:  # point on an axis or a cylinder's axis
            pt, ax = (fa, fb) if m.a.kind == "point" else (fb, fa)
            return [("ON_AXIS", pt, ax, 0.0)]
        if t in ("coincident", "distance") and kinds == {"plane"}:
            return [align("anti-aligned" if t == "coincident" else "any"),
                    ("PLANE", fb, fa, dist if t == "distance" else 0.0)]
        if t == "distance":  # point-point
            return [("PDIST", fa, fb, dist)]
        if t == "concentric":
            return [align("any"), ("ON_AXIS", fb, fa, 0.0)]
        if t == "parallel":
            return [align("any")]
        if t in ("perpendicular", "angle"):
            target = 0.0 if t == "perpendicular" else float(np.cos(np.radians(m.angle_deg or 0.0)))
            return [("DOT", fa, fb, target)]
        if t == "tangent":
            pl, cy = (fa, fb) if m.a.kind == "plane" else (fb, fa)
            radius = self._radius(m.b if m.a.kind == "plane" else m.a)
            return [("DOT", pl, cy, 0.0), ("PLANE", cy, pl, radius)]
        raise ValueError(f"unsupported mate {t} between {kinds}")  # pragma: no cover

    def _fixed(self, m: MateSpec, start: np.ndarray) -> list[tuple[str, int, int, float]]:
        """'fixed': part a keeps its starting pose relative to b (or the world)."""
        pa = m.a.part
        pb = m.b.part if m.b is not None else None
        ta = start[self._part_row[pa]] if pa else np.eye(4)
        tb = start[self._part_row[pb]] if pb else np.eye(4)
        rel = np.linalg.inv(tb) @ ta
        out = []
        for k in range(3):  # each axis of a equals the matching axis of b·rel
            fa = self._add(pa, np.zeros(3), _EYE[k])
            fb = self._add(pb, np.zeros(3), rel[:3, k])
            out.append(("DSUM", fa, fb, -1.0))
        origin_a = self._add(pa, np.zeros(3), np.zeros(3))
        target_b = self._add(pb, rel[:3, 3] / self.length, np.zeros(3))
        out.append(("PDIFF", target_b, origin_a, 0.0))  # p_a − (b's image of a's origin)
        return out

    def _pattern(self) -> None:
        """Column blocks touched by each row (≤ 2 parts), for JᵀJ and Jᵀr without dense products."""
        owners = np.full((self.n_rows, 2), -1, dtype=np.intp)
        for g_kind, g in self._groups.items():
            rows = g.row[:, None] + np.arange(_ROWS[g_kind])
            owners[rows, 0] = self._owner[g.a][:, None]
            owners[rows, 1] = self._owner[g.b][:, None]
        same = owners[:, 0] == owners[:, 1]
        owners[same, 1] = -1
        cols = 6 * owners[:, :, None] + np.arange(6)
        cols[owners < 0] = self.n_cols  # a padding column that is always zero
        self.row_cols = cols.reshape(self.n_rows, 12)

    # --- evaluation -----------------------------------------------------------------------
    def evaluate(self, poses: np.ndarray) -> Evaluation:
        """Residuals and Jacobian of every mate at ``poses`` ((n, 4, 4), metres)."""
        ext = np.concatenate([poses, np.eye(4)[None]])[self._fpart]  # world features: identity
        lever = np.einsum("fij,fj->fi", ext[:, :3, :3], self._origin)
        d = np.einsum("fij,fj->fi", ext[:, :3, :3], self._dir)
        p = lever + ext[:, :3, 3] / self.length
        r = np.zeros(self.n_rows)
        flat: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for kind, g in self._groups.items():
            res, grads = _KERNELS[kind](p[g.a], d[g.a], p[g.b], d[g.b], g.target)
            rows = g.row[:, None] + np.arange(res.shape[1])
            r[rows] = res
            for feats, gp, gd in ((g.a, grads[0], grads[1]), (g.b, grads[2], grads[3])):
                owner = self._owner[feats]
                keep = owner >= 0
                if not keep.any():
                    continue
                f, own, rw = feats[keep], owner[keep], rows[keep]
                block = np.zeros(rw.shape + (6,))
                if gp is not None:
                    gpk = gp[keep]
                    block[..., :3] = gpk
                    block[..., 3:] = _cross3(lever[f][:, None, :], gpk)
                if gd is not None:
                    block[..., 3:] += _cross3(d[f][:, None, :], gd[keep])
                cols = 6 * own[:, None, None] + np.arange(6)
                flat.append((rw[:, :, None] * self.n_cols + cols).ravel())
                vals.append(block.ravel())
        size = self.n_rows * self.n_cols
        jac = (np.bincount(np.concatenate(flat), np.concatenate(vals), minlength=size)
               if flat else np.zeros(size))
        return Evaluation(r, jac.reshape(self.n_rows, self.n_cols))

    def normal_equations(self, ev: Evaluation, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """JᵀJ and Jᵀr over ``rows``, from each row's ≤ 12 nonzero columns (no dense matmul)."""
        n = self.n_cols + 1
        cols = self.row_cols[rows]
        vals = np.concatenate([ev.jac, np.zeros((self.n_rows, 1))], axis=1)[rows[:, None], cols]
        jtj = np.bincount((cols[:, :, None] * n + cols[:, None, :]).ravel(),
                          (vals[:, :, None] * vals[:, None, :]).ravel(), minlength=n * n)
        jtr = np.bincount(cols.ravel(), (vals * ev.r[rows][:, None]).ravel(), minlength=n)
        return jtj.reshape(n, n)[:-1, :-1], jtr[:-1]


# --- kernels: residuals (m, k) and gradients w.r.t. (p_a, d_a, p_b, d_b), each (m, k, 3) or None ---
_Grads = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]


def _pdiff(pa, da, pb, db, target) -> tuple[np.ndarray, _Grads]:
    eye = np.broadcast_to(_EYE, (len(pa), 3, 3))
    return pb - pa, (-eye, None, eye, None)


def _plane(pp, dp, pq, dq, target) -> tuple[np.ndarray, _Grads]:
    diff = pp - pq
    r = np.einsum("mi,mi->m", dq, diff) - target
    return r[:, None], (dq[:, None], None, -dq[:, None], diff[:, None])


def _on_axis(pp, dp, pq, dq, target) -> tuple[np.ndarray, _Grads]:
    diff = pp - pq
    proj = _EYE - dq[:, :, None] * dq[:, None, :]
    along = np.einsum("mi,mi->m", dq, diff)
    dproj = -along[:, None, None] * _EYE - dq[:, :, None] * diff[:, None, :]
    return np.einsum("mij,mj->mi", proj, diff), (proj, None, -proj, dproj)


def _cross(pa, da, pb, db, target) -> tuple[np.ndarray, _Grads]:
    return _cross3(da, db), (None, -_skew(db), None, _skew(da))


def _dsum(pa, da, pb, db, sign) -> tuple[np.ndarray, _Grads]:
    eye = np.broadcast_to(_EYE, (len(da), 3, 3))
    return da + sign[:, None] * db, (None, eye, None, sign[:, None, None] * eye)


def _dot(pa, da, pb, db, target) -> tuple[np.ndarray, _Grads]:
    r = np.einsum("mi,mi->m", da, db) - target
    return r[:, None], (None, db[:, None], None, da[:, None])


def _pdist(pa, da, pb, db, target) -> tuple[np.ndarray, _Grads]:
    diff = pb - pa
    n = np.linalg.norm(diff, axis=1)
    tiny = n <= 1e-15
    u = np.where(tiny[:, None], np.array([1.0, 0.0, 0.0]), diff / np.where(tiny, 1.0, n)[:, None])
    return (n - target)[:, None], (-u[:, None], None, u[:, None], None)


_KERNELS = {"PDIFF": _pdiff, "PLANE": _plane, "ON_AXIS": _on_axis, "CROSS": _cross,
            "DSUM": _dsum, "DOT": _dot, "PDIST": _pdist}
