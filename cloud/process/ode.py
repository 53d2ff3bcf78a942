"""ODE backends behind one interface: a hand-written RK4, scipy's LSODA, BDF and Radau, SUNDIALS CVODE.

``solve(rhs, t_span, y0, t_eval, spec)`` integrates ``dy/dt = rhs(t, y)`` and
answers the states at ``t_eval``. The backend and tolerances come from a
``SolverSpec``, chosen per binding. A solver that fails (too many steps, a
step size underflow, a right-hand side that returns NaN or raises) answers
``ok=False`` with a message a person can read, never an exception into the
engine and never a shortened result passed off as complete.

Events are functions ``g(t, y)``; each crossing of zero from below is
reported in ``t_events`` (one array per event), located by the backend's own
root finder (scipy, CVODE) or by cubic Hermite interpolation of the step
(RK4). The JAX backend (diffrax) is an optional extra that is not installed
by default: asking for it answers a clear "not supported" error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cloud.process.model import SolverSpec
from shared.errors import InputError

__all__ = ["DEFAULT_RK4_STEP_S", "BackendNotSupportedError", "OdeResult", "Rhs", "solve"]

Rhs = Callable[[float, np.ndarray], np.ndarray]
Event = Callable[[float, np.ndarray], float]

DEFAULT_RK4_STEP_S = 0.5  # the fixed step when a spec gives no max_step_s
_MAX_STEPS = 200_000  # per solve; a run past it is reported as failed, not cut short
# Evaluations of the equations per adaptive solve (the PUR model's tightest reference, Radau at rtol 1e-11, needs
# about 13,000): a tiny max_step_s or a tolerance the solver cannot meet would otherwise run for minutes. RK4 is
# bounded before it starts, by its step count.
_MAX_EVALS = 200_000


class BackendNotSupportedError(InputError):
    """The backend needs an optional component that is not installed."""


@dataclass(frozen=True)
class OdeResult:
    """States at the requested times: ``y`` has shape (len(t), n). ``ok`` False with ``message`` on failure."""

    t: np.ndarray
    y: np.ndarray
    ok: bool
    message: str
    nfev: int
    t_events: list[np.ndarray] = field(default_factory=list)


class _RhsFailed(Exception):
    """The right-hand side raised or returned a non-finite value; carries the reason."""


def _guarded(rhs: Rhs, counter: list[int], spec: SolverSpec) -> Rhs:
    def f(t: float, y: np.ndarray) -> np.ndarray:
        counter[0] += 1
        if counter[0] > _MAX_EVALS and spec.backend != "rk4":
            step = "none" if spec.max_step_s is None else f"{spec.max_step_s:g} s"
            raise _RhsFailed(f"the solve stopped at t = {t:.3f} s after {_MAX_EVALS:,} evaluations of the model's "
                             f"equations (the limit per solve); give a larger max_step_s (got {step}) or looser "
                             f"tolerances (rtol {spec.rtol:g}, atol {spec.atol:g})")
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # judged below, as non-finite
                dy = np.asarray(rhs(t, y), dtype=float)
        except (ArithmeticError, ValueError) as exc:
            raise _RhsFailed(f"the model's equations failed at t = {t:.3f} s: {exc}") from exc
        if not np.all(np.isfinite(dy)):
            raise _RhsFailed(f"the model's equations gave a non-finite rate at t = {t:.3f} s")
        return dy

    return f


def _failed(n: int, message: str, nfev: int) -> OdeResult:
    return OdeResult(np.empty(0), np.empty((0, n)), False, message, nfev)


def solve(rhs: Rhs, t_span: tuple[float, float], y0: Sequence[float] | np.ndarray, t_eval: np.ndarray,
          spec: SolverSpec, events: Sequence[Event] | None = None) -> OdeResult:
    """Integrate ``rhs`` over ``t_span`` with the spec's backend; the states at ``t_eval``."""
    y0 = np.asarray(y0, dtype=float)
    t_eval = np.asarray(t_eval, dtype=float)
    events = list(events or [])
    if spec.backend == "jax":
        raise BackendNotSupportedError(
            "backend 'jax' is not supported in this installation: install the jax extra (jax and diffrax, "
            "about 620 MB) to use it; the installed backends are rk4, lsoda, bdf, radau and cvode",
            path="solver.backend")
    counter = [0]
    f = _guarded(rhs, counter, spec)
    try:
        if spec.backend == "rk4":
            return _rk4(f, t_span, y0, t_eval, spec, events, counter)
        if spec.backend == "cvode":
            return _cvode(f, t_span, y0, t_eval, spec, events, counter)
        return _scipy(f, t_span, y0, t_eval, spec, events, counter)
    except _RhsFailed as exc:
        return _failed(y0.size, str(exc), counter[0])


def _scipy(f: Rhs, t_span: tuple[float, float], y0: np.ndarray, t_eval: np.ndarray, spec: SolverSpec,
           events: list[Event], counter: list[int]) -> OdeResult:
    from scipy.integrate import solve_ivp

    method = {"lsoda": "LSODA", "bdf": "BDF", "radau": "Radau"}[spec.backend]
    wrapped = []
    for g in events:
        def ev(t: float, y: np.ndarray, g: Event = g) -> float:
            return g(t, y)
        ev.direction = 1  # type: ignore[attr-defined]
        wrapped.append(ev)
    sol = solve_ivp(f, t_span, y0, method=method, t_eval=t_eval, rtol=spec.rtol, atol=spec.atol,
                    max_step=spec.max_step_s or math.inf, events=wrapped or None)
    if sol.status != 0 or sol.y.shape[1] != t_eval.size:
        return _failed(y0.size, f"{method} failed: {sol.message}", counter[0])
    t_events = [np.asarray(te, dtype=float) for te in (sol.t_events or [])]
    return OdeResult(sol.t, sol.y.T.copy(), True, "", counter[0], t_events)


def _cvode(f: Rhs, t_span: tuple[float, float], y0: np.ndarray, t_eval: np.ndarray, spec: SolverSpec,
           events: list[Event], counter: list[int]) -> OdeResult:
    from sksundae.cvode import CVODE

    def rhsfn(t: float, y: np.ndarray, yp: np.ndarray) -> None:
        yp[:] = f(t, y)

    options: dict[str, object] = {"method": "BDF", "rtol": spec.rtol, "atol": spec.atol,
                                  "max_step": spec.max_step_s or 0.0, "max_num_steps": _MAX_STEPS}
    if events:
        def eventsfn(t: float, y: np.ndarray, out: np.ndarray) -> None:
            for i, g in enumerate(events):
                out[i] = g(t, y)
        eventsfn.terminal = [False] * len(events)  # type: ignore[attr-defined]
        eventsfn.direction = [1] * len(events)  # type: ignore[attr-defined]
        options.update(eventsfn=eventsfn, num_events=len(events))
    # CVODE wants a strictly increasing span that starts at t0
    tspan = t_eval if t_eval.size > 2 and t_eval[0] == t_span[0] else np.unique(np.r_[t_span[0], t_eval])
    try:
        sol = CVODE(rhsfn, **options).solve(tspan, y0)
    except _RhsFailed:
        raise
    except (RuntimeError, ValueError) as exc:
        return _failed(y0.size, f"CVODE failed: {exc}", counter[0])
    if not sol.success:
        return _failed(y0.size, f"CVODE failed: {sol.message}", counter[0])
    t, y = np.asarray(sol.t, dtype=float), np.asarray(sol.y, dtype=float)
    keep = np.isin(t, t_eval)
    t, y = t[keep], y[keep]
    if t.size != t_eval.size:
        return _failed(y0.size, f"CVODE stopped at t = {t[-1] if t.size else t_span[0]:.3f} s", counter[0])
    t_events: list[np.ndarray] = []
    if events:
        te = np.asarray(sol.t_events if sol.t_events is not None else [], dtype=float)
        ie = np.asarray(sol.i_events if sol.i_events is not None else np.zeros((0, len(events))))
        t_events = [te[ie[:, i] > 0] if te.size else np.empty(0) for i in range(len(events))]
    return OdeResult(t, y, True, "", counter[0], t_events)


def _rk4(f: Rhs, t_span: tuple[float, float], y0: np.ndarray, t_eval: np.ndarray, spec: SolverSpec,
         events: list[Event], counter: list[int]) -> OdeResult:
    """Classical fourth-order Runge-Kutta at a fixed step; outputs and events by cubic Hermite interpolation."""
    t0, t1 = t_span
    h_max = spec.max_step_s or DEFAULT_RK4_STEP_S
    n_steps = max(1, math.ceil((t1 - t0) / h_max - 1e-9))
    if n_steps > _MAX_STEPS:
        return _failed(y0.size, f"rk4 would take {n_steps} steps (more than {_MAX_STEPS}); give a larger "
                       "max_step_s or an adaptive backend", 0)
    h = (t1 - t0) / n_steps
    out = np.empty((t_eval.size, y0.size))
    t_events: list[list[float]] = [[] for _ in events]
    t, y, k1 = t0, y0.copy(), f(t0, y0)
    g_prev = [g(t, y) for g in events]
    j = 0
    while j < t_eval.size and t_eval[j] <= t0:
        out[j] = y
        j += 1
    for i in range(n_steps):
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        t_new = t0 + (i + 1) * h
        y_new = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        k1_new = f(t_new, y_new)

        def hermite(s: float, y: np.ndarray = y, y_new: np.ndarray = y_new, k1: np.ndarray = k1,
                    k1_new: np.ndarray = k1_new) -> np.ndarray:
            return ((2 * s**3 - 3 * s**2 + 1) * y + (s**3 - 2 * s**2 + s) * h * k1
                    + (-2 * s**3 + 3 * s**2) * y_new + (s**3 - s**2) * h * k1_new)

        while j < t_eval.size and t_eval[j] <= t_new + 1e-12:
            out[j] = hermite((t_eval[j] - t) / h)
            j += 1
        for e, g in enumerate(events):
            g_new = g(t_new, y_new)
            if g_prev[e] < 0 <= g_new:
                def g_at(s: float, g: Event = g, t: float = t,
                         hermite: Callable[[float], np.ndarray] = hermite) -> float:
                    return g(t + s * h, hermite(s))
                t_events[e].append(_bisect(g_at, t, h))
            g_prev[e] = g_new
        t, y, k1 = t_new, y_new, k1_new
    return OdeResult(t_eval.copy(), out, True, "", counter[0], [np.asarray(te) for te in t_events])


def _bisect(g: Callable[[float], float], t: float, h: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if g(mid) < 0:
            lo = mid
        else:
            hi = mid
    return t + (lo + hi) / 2 * h
