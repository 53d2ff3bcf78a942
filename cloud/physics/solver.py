"""The mate solver: part poses by nonlinear least squares, DOF analysis, redundant and conflicting mates.

Unknowns are the 6-DOF poses of the parts that are not grounded, solved by
nonlinear least squares (Levenberg–Marquardt on the pose manifold: each step
is a small translation and rotation vector per part, applied as R ← exp(δθ)·R,
with analytic Jacobians). Bad starting poses are handled by multi-start: the
given poses first, then the same with perturbed rotations, then random
rotations and positions (a seeded generator, so results are reproducible).

At the result the constraint Jacobian J (rows: mate equations; columns:
small world-frame translations/rotations of each free part) tells the rest:
- remaining DOF = 6·n_free − rank J; its null space holds the free motions,
  split per part into translations, rotations (axis + point) and screws;
- a mate whose rows add less rank than they have on their own is redundant;
- a start that ends with a few violated mates which cannot hold even on their
  own (solved alone from every start) ends the multi-start: no other start
  can satisfy them all;
- when no start satisfies every mate, a minimal conflicting set (removing
  any one mate of it makes the rest solvable) is found from the best
  (least-squares) solution x*. There JᵀR = 0: the residual is orthogonal to
  every motion, so the mates that carry residual at x* are, to first order, a
  conflicting set on their own (x* stays a stationary point with the same
  cost when the satisfied mates are dropped). A deletion filter then runs over
  those few mates only, each trial solved warm from x* on a small system of
  just the parts the trial's mates name. If the violated mates alone turn out
  solvable (the nonlinear case the first-order argument misses), the filter
  runs over every mate connected to them instead.

Every loop checks the request's time budget (``budget.check_time``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.linalg
from scipy.spatial.transform import Rotation

from cloud.physics.assembly import Assembly, Part
from cloud.physics.budget import check_time
from cloud.physics.equations import CompiledMates
from cloud.physics.mates import MateSpec

__all__ = ["MateResidual", "MateSystem", "Motion", "PartDof", "RedundantMate", "SolveResult"]

RANK_TOL = 1e-7
MotionKind = Literal["translation", "rotation", "screw"]


@dataclass(frozen=True)
class MateResidual:
    index: int
    name: str
    type: str
    length_m: float
    angle_rad: float
    violated: bool


@dataclass(frozen=True)
class RedundantMate:
    index: int
    name: str
    equations: int
    independent: int


@dataclass(frozen=True)
class Motion:
    """A free motion: translation along ``direction``, or rotation/screw about an axis."""

    kind: MotionKind
    direction: np.ndarray
    point_m: np.ndarray | None = None
    pitch_m_per_rad: float = 0.0


@dataclass(frozen=True)
class PartDof:
    part: str
    dof: int
    motions: list[Motion]


@dataclass
class SolveResult:
    converged: bool
    poses: dict[str, np.ndarray]
    residuals: list[MateResidual]
    redundant: list[RedundantMate]
    conflicting: list[int]
    dof_total: int
    parts: list[PartDof]
    starts: int
    grounded: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def violated(self) -> list[MateResidual]:
        return [r for r in self.residuals if r.violated]

    @property
    def fully_redundant(self) -> list[RedundantMate]:
        """Mates that add no constraint at all (their every equation repeats other mates)."""
        return [r for r in self.redundant if r.independent == 0]


def _rank(m: np.ndarray) -> int:
    if m.size == 0:
        return 0
    s = np.linalg.svd(m, compute_uv=False)
    return int((s > RANK_TOL * max(1.0, s[0])).sum())


def _norm2(jac: np.ndarray, iterations: int = 30) -> float:
    """Largest singular value by power iteration (it only scales the rank tolerance)."""
    if jac.size == 0:
        return 0.0
    v = np.full(jac.shape[1], 1.0 / np.sqrt(jac.shape[1]))
    norm = 0.0
    for _ in range(iterations):
        w = jac.T @ (jac @ v)
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            return 0.0
        v = w / norm
    return float(np.sqrt(norm))


def _row_space(jac: np.ndarray, ranges: list[tuple[int, int]],
               tol: float) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Orthonormal basis of J's row space, built mate by mate, and each mate's
    (index, own rank, rank it adds to the mates before it).

    Each mate's rows are projected off the basis so far; the singular values of
    the rest (≤ 6 rows) above ``tol`` are the new independent directions. This is
    the rank of every prefix of J without an SVD of J: small LAPACK calls only,
    which stay fast on a busy machine where a threaded SVD of J does not.
    """
    basis = np.zeros((0, jac.shape[1]))
    out = []
    for k, (a, b) in enumerate(ranges):
        block = jac[a:b]
        own = _rank(block)
        if own == 0:
            out.append((k, 0, 0))
            continue
        rest = block - (block @ basis.T) @ basis
        rest -= (rest @ basis.T) @ basis  # twice: classical Gram–Schmidt loses orthogonality once
        _, sv, vt = np.linalg.svd(rest, full_matrices=False)
        new = int((sv > tol).sum())
        basis = np.vstack([basis, vt[:new]])
        out.append((k, own, new))
    return basis, out


def _null_space(basis: np.ndarray, n: int) -> np.ndarray:
    """(n, n − r) orthonormal complement of the r orthonormal rows of ``basis``."""
    if basis.shape[0] == 0:
        return np.eye(n)
    q, _ = scipy.linalg.qr(basis.T, mode="full", check_finite=False)
    return q[:, basis.shape[0]:]


def _damped_solve(jtj: np.ndarray, jtr: np.ndarray, lam: float,
                  diag: tuple[np.ndarray, ...]) -> np.ndarray:
    """δ from (JᵀJ + λI)δ = −Jᵀr; Cholesky, or LU if rounding left the matrix indefinite."""
    a = jtj.copy()
    a[diag] += lam
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, check_finite=False), -jtr,
                                      check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.solve(a, -jtr)


class MateSystem:
    """The equations of an assembly's mates over the poses of its free parts."""

    def __init__(self, assembly: Assembly, mates: list[MateSpec] | None = None,
                 tolerance: float = 1e-8, *, _length: float | None = None) -> None:
        self.assembly = assembly
        self.mates = list(assembly.spec.mates if mates is None else mates)
        self.names = [p.name for p in assembly.parts]
        index = {n: k for k, n in enumerate(self.names)}
        grounded = [p.name for p in assembly.parts if p.fixed]
        self.notes: list[str] = []
        if not grounded:
            grounded = [self.names[0]]
            self.notes.append(f"no part is fixed: {self.names[0]} is held fixed as the base")
        self.grounded = grounded
        self.free = [n for n in self.names if n not in grounded]
        self.free_index = {n: k for k, n in enumerate(self.free)}
        poses = np.stack([p.pose for p in assembly.parts])
        if _length is None:
            spread = np.ptp(poses[:, :3, 3], axis=0) if len(poses) > 1 else np.zeros(3)
            sizes = [float(np.linalg.norm(np.ptp(p.mesh.vertices, axis=0))) for p in assembly.parts]
            _length = max(float(np.linalg.norm(spread)), *sizes, 1e-3)
        self.length = _length
        self.tolerance = tolerance
        self._part_of = index
        self._free_rows = np.array([index[n] for n in self.free], dtype=np.intp)
        self._start = poses
        self._eq = CompiledMates(self.mates, index, self.free_index,
                                 {p.name: p.unit for p in assembly.parts}, assembly.unit,
                                 self.length, poses)

    def mate_name(self, k: int) -> str:
        m = self.mates[k]
        return m.name or f"mates[{k}] ({m.type})"

    # --- evaluation -----------------------------------------------------------------------
    def _rows(self, subset: list[int] | None) -> np.ndarray:
        if subset is None:
            return np.arange(self._eq.n_rows)
        parts = [np.arange(*self._eq.ranges[k]) for k in subset]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)

    def equations(self, poses: np.ndarray, subset: list[int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], np.ndarray]:
        """Residual vector, Jacobian (rows × 6·n_free, [δt/L, δθ] per part), row ranges, angular mask."""
        ev = self._eq.evaluate(poses)
        if subset is None:
            return ev.r, ev.jac, list(self._eq.ranges), self._eq.angular
        rows = self._rows(subset)
        ranges, row = [], 0
        for k in subset:
            a, b = self._eq.ranges[k]
            ranges.append((row, row + b - a))
            row += b - a
        return ev.r[rows], ev.jac[rows], ranges, self._eq.angular[rows]

    # --- solving --------------------------------------------------------------------------
    def _retract(self, poses: np.ndarray, step: np.ndarray) -> np.ndarray:
        out = poses.copy()
        idx, st = self._free_rows, step.reshape(-1, 6)
        out[idx, :3, 3] += st[:, :3] * self.length
        turn = Rotation.from_rotvec(st[:, 3:]).as_matrix()
        out[idx, :3, :3] = np.einsum("nij,njk->nik", turn, out[idx, :3, :3])
        return out

    def _run(self, start: np.ndarray, subset: list[int] | None,
             max_iter: int = 100) -> tuple[np.ndarray, float]:
        """Levenberg–Marquardt on the pose manifold: solve (JᵀJ + λI)δ = −Jᵀr, then retract.

        JᵀJ is formed from each row's ≤ 12 nonzero columns and factorised by Cholesky:
        no dense BLAS products, which on a busy machine can cost 100× their idle time.
        """
        poses, rows = start, self._rows(subset)
        ev = self._eq.evaluate(poses)
        r = ev.r[rows]
        if not self.free or r.size == 0:
            return poses, float(np.abs(r).max(initial=0.0))
        cost, lam, stop = float(r @ r), 1e-3, self.tolerance * 1e-3
        jtj, jtr = self._eq.normal_equations(ev, rows)
        diag = np.diag_indices(jtj.shape[0])
        for _ in range(max_iter):
            if np.abs(r).max() < stop:
                break
            check_time("solving the mates")
            step = _damped_solve(jtj, jtr, lam, diag)
            trial = self._retract(poses, step)
            ev2 = self._eq.evaluate(trial)
            r2 = ev2.r[rows]
            cost2 = float(r2 @ r2)
            if cost2 < cost:
                poses, r, cost = trial, r2, cost2
                jtj, jtr = self._eq.normal_equations(ev2, rows)
                lam = max(lam / 5.0, 1e-12)
                if np.abs(jtr).max() <= 1e-10 * np.sqrt(cost):
                    break  # a stationary point with residual left: a least-squares minimum
            else:
                lam *= 4.0
                if lam > 1e8:
                    break
            if np.linalg.norm(step) < 1e-15:
                break
        return poses, float(np.abs(r).max(initial=0.0))

    def _starts(self, rng: np.random.Generator, count: int,
                first: np.ndarray | None = None) -> Iterator[np.ndarray]:
        base = self._start if first is None else first
        yield base
        centre = base[:, :3, 3].mean(axis=0)
        for k in range(1, count):
            poses = base.copy()
            for name in self.free:
                i = self._part_of[name]
                if k == 1:
                    small = Rotation.from_rotvec(rng.normal(scale=0.3, size=3)).as_matrix()
                    poses[i, :3, :3] = small @ poses[i, :3, :3]
                else:
                    poses[i, :3, :3] = Rotation.random(random_state=rng).as_matrix()
                    poses[i, :3, 3] = centre + rng.normal(scale=self.length, size=3)
            yield poses

    def solve_subset(self, subset: list[int] | None, max_starts: int = 10, seed: int = 0,
                     first: np.ndarray | None = None) -> tuple[np.ndarray, float, int]:
        """Best poses, their largest residual and the starts used; ``first``: the first start."""
        rng = np.random.default_rng(seed)
        best, best_err, used = self._start, np.inf, 0
        for start in self._starts(rng, max_starts, first):
            used += 1
            poses, err = self._run(start, subset)
            if err < best_err:
                best, best_err = poses, err
            if best_err <= self.tolerance:
                break
        return best, best_err, used

    def solve(self, max_starts: int = 10, seed: int = 0) -> SolveResult:
        """Multi-start solve; a start that ends with a few violated mates that cannot hold even on
        their own (solved alone, with every start) ends the search: no start can satisfy all."""
        rng = np.random.default_rng(seed)
        poses, err, used = self._start, np.inf, 0
        for start in self._starts(rng, max_starts):
            used += 1
            found, found_err = self._run(start, None)
            if found_err < err:
                poses, err = found, found_err
            if err <= self.tolerance or self._conflict_proven(found, max_starts, seed):
                break
        conflicting: list[int] = []
        if err > self.tolerance:
            conflicting = self.minimal_conflict(poses, max_starts, seed)
        return self._result(poses, used, conflicting)

    def validate(self) -> SolveResult:
        """Residuals and DOF at the given poses; nothing moves."""
        return self._result(self._start, 0, [])

    def minimal_conflict(self, poses: np.ndarray, max_starts: int, seed: int) -> list[int]:
        """A minimal conflicting set from the least-squares solution ``poses`` (see the module doc)."""
        bad = self._violated(poses)
        core = bad
        if self._solvable(core, poses, max_starts, seed):
            core = self._connected(set(bad))
        for k in list(core):
            check_time("searching for the conflicting mates")
            trial = [m for m in core if m != k]
            if not self._solvable(trial, poses, max_starts, seed):
                core = trial
        return sorted(core)

    def _violated(self, poses: np.ndarray) -> list[int]:
        r, _, ranges, _ = self.equations(poses)
        return [k for k, (a, b) in enumerate(ranges) if np.abs(r[a:b]).max(initial=0) > self.tolerance]

    def _conflict_proven(self, poses: np.ndarray, max_starts: int, seed: int) -> bool:
        """Whether the mates violated at ``poses`` are few (under half) and cannot hold on their own."""
        bad = self._violated(poses)
        return 0 < 2 * len(bad) < len(self.mates) and not self._solvable(bad, poses, max_starts, seed)

    def _solvable(self, subset: list[int], poses: np.ndarray, max_starts: int, seed: int) -> bool:
        """Whether the mates ``subset`` can hold together, solved warm from ``poses`` on only
        the parts they name (the others have no equations in it)."""
        if not subset:
            return True
        sub, rows = self._subsystem(subset)
        return sub.solve_subset(None, max_starts, seed, first=poses[rows])[1] <= self.tolerance

    def _subsystem(self, subset: list[int]) -> tuple[MateSystem, np.ndarray]:
        """The system of the mates ``subset`` over the ground and the parts they name, at the same
        scale and with the same starting poses (which 'fixed' mates keep); and those parts' rows."""
        mates = [self.mates[k] for k in subset]
        named = {f.part for m in mates for f in (m.a, m.b) if f is not None and f.part is not None}
        keep = [i for i, n in enumerate(self.names) if n in named or n in self.grounded]
        parts: list[Part] = [replace(self.assembly.parts[i], pose=self._start[i],
                                     fixed=self.names[i] in self.grounded) for i in keep]
        sub = MateSystem(Assembly(self.assembly.spec, parts), mates, self.tolerance, _length=self.length)
        return sub, np.array(keep, dtype=np.intp)

    def _connected(self, seeds: set[int]) -> list[int]:
        parts_of: list[set[str]] = []
        for m in self.mates:
            named = [m.a.part, m.b.part if m.b is not None else None]
            parts_of.append({p for p in named if p is not None and p not in self.grounded})
        reach: set[str] = set().union(*(parts_of[k] for k in seeds)) if seeds else set()
        changed = True
        while changed:
            changed = False
            for touched in parts_of:
                if touched & reach and not touched <= reach:
                    reach |= touched
                    changed = True
        return [k for k, touched in enumerate(parts_of) if touched & reach or k in seeds]

    # --- analysis -------------------------------------------------------------------------
    def _result(self, poses: np.ndarray, starts: int, conflicting: list[int]) -> SolveResult:
        r, jac, ranges, ang = self.equations(poses)
        residuals = []
        for k, (a, b) in enumerate(ranges):
            rows, is_ang = r[a:b], ang[a:b]
            length = float(np.abs(rows[~is_ang]).max(initial=0.0)) * self.length
            angle = float(np.abs(rows[is_ang]).max(initial=0.0))
            worst = float(np.abs(rows).max(initial=0.0))
            residuals.append(MateResidual(k, self.mate_name(k), self.mates[k].type, length,
                                          angle, worst > self.tolerance))
        basis, increments = _row_space(jac, ranges, RANK_TOL * max(1.0, _norm2(jac)))
        redundant = [RedundantMate(k, self.mate_name(k), own, new)
                     for k, own, new in increments if new < own]
        dof_total, parts = self._dof(jac.shape[1], basis, poses)
        return SolveResult(
            converged=not any(x.violated for x in residuals),
            poses={n: poses[i] for n, i in self._part_of.items()},
            residuals=residuals, redundant=redundant, conflicting=conflicting,
            dof_total=dof_total, parts=parts, starts=starts, grounded=list(self.grounded),
            notes=list(self.notes),
        )

    def _dof(self, n: int, basis: np.ndarray, poses: np.ndarray) -> tuple[int, list[PartDof]]:
        """Remaining DOF = n − rank J; the null space of J holds the free motions."""
        out = [PartDof(g, 0, []) for g in self.grounded]
        if n == 0:
            return 0, out
        null = _null_space(basis, n)
        for name, k in self.free_index.items():
            block = null[6 * k:6 * k + 6]
            out.append(self._motions(name, block, poses[self._part_of[name]]))
        return n - basis.shape[0], out

    def _motions(self, name: str, block: np.ndarray, pose: np.ndarray) -> PartDof:
        if block.size == 0:
            return PartDof(name, 0, [])
        u, s, _ = np.linalg.svd(block, full_matrices=False)
        basis = u[:, s > RANK_TOL * max(1.0, s.max(initial=0.0))]
        if basis.shape[1] == 0:
            return PartDof(name, 0, [])
        _, sw, vt = np.linalg.svd(basis[3:], full_matrices=True)
        n_rot = int((sw > 1e-6).sum())
        trans = basis @ vt[n_rot:].T
        rots = basis @ vt[:n_rot].T
        motions = []
        tdirs = []
        for col in trans.T:
            v = col[:3] / np.linalg.norm(col[:3])
            tdirs.append(v)
            motions.append(Motion("translation", v))
        for col in rots.T:
            v, w = col[:3].copy(), col[3:]
            for t in tdirs:
                v -= (v @ t) * t
            ww = float(w @ w)
            point = pose[:3, 3] + self.length * np.cross(w, v) / ww
            pitch = float(w @ v) * self.length / ww
            kind: MotionKind = "rotation" if abs(pitch) < 1e-9 * self.length else "screw"
            motions.append(Motion(kind, w / np.sqrt(ww), point, pitch))
        return PartDof(name, basis.shape[1], motions)
