"""The PUR foam moulding model behind the process-model contract: one shot, from the shot start to the horizon.

``PurModel.run`` takes the measured mould temperature (degC, interpolated
linearly, held constant before the first and after the last reading), solves
the equations of ``cloud.process.pur.equations`` with the binding's backend
and answers the series α, T_core, p, ρ, viscosity (infinite from the gel point),
hardness and fill, plus the scalars gel time, demould time, hardness at
demould and at 24 h, moulded density and the margin to the cycle time.
A failed solve or an unusable input answers ``ok=False`` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from cloud.process import ode
from cloud.process.model import RunInputs, RunOutputs, SolverSpec
from cloud.process.pur.equations import PurEquations
from cloud.process.pur.scenario import PurScenario

__all__ = ["MOULD_T_RANGE_C", "RK4_MAX_STEP_S", "PurModel", "Trajectory", "simulate"]

RK4_MAX_STEP_S = 1.0  # the fixed step above which RK4 leaves the 0.1 K agreement (docs/process-models.md)
MOULD_T_RANGE_C = (-20.0, 250.0)  # a reading outside this is a sensor fault, not a mould temperature


@dataclass(frozen=True)
class Trajectory:
    """A solved shot: every state at every output time, the equations used and the gel time."""

    t: np.ndarray
    y: np.ndarray
    eq: PurEquations
    t_gel: float
    ok: bool
    message: str
    nfev: int


def mould_temperature_function(t: np.ndarray, values_c: np.ndarray) -> Callable[[float], float]:
    """T_m(t) in K from readings in degC: linear between readings, held constant outside them."""
    tk = np.asarray(values_c, dtype=float) + 273.15
    tt = np.asarray(t, dtype=float)
    if tt.size == 1:
        const = float(tk[0])
        return lambda _t: const
    order = np.argsort(tt, kind="stable")
    tt, tk = tt[order], tk[order]
    return lambda s: float(np.interp(s, tt, tk))


def simulate(scenario: PurScenario, solver: SolverSpec, mould_temperature_k: Callable[[float], float] | None = None,
             horizon_s: float | None = None, output_step_s: float | None = None) -> Trajectory:
    """Solve one shot of ``scenario``; the mould at the scenario's temperature unless a function is given."""
    t_m = mould_temperature_k
    if t_m is None:
        const = scenario.mould_temperature_c + 273.15
        t_m = lambda _t: const  # noqa: E731
    eq = PurEquations(scenario, t_m)
    end = horizon_s or scenario.horizon_s
    step = output_step_s or scenario.output_step_s
    t_eval = np.linspace(0.0, end, int(round(end / step)) + 1)
    x_gel = eq.m.x_gel
    res = ode.solve(eq.rhs, (0.0, end), eq.y0(), t_eval, solver, events=[lambda _t, y: float(y[0]) - x_gel])
    t_gel = float(res.t_events[0][0]) if res.ok and res.t_events and res.t_events[0].size else math.nan
    message = res.message
    if res.ok and not np.all(np.isfinite(res.y)):
        return Trajectory(res.t, res.y, eq, t_gel, False, "the solution has non-finite values", res.nfev)
    return Trajectory(res.t, res.y, eq, t_gel, res.ok, message, res.nfev)


def _first_crossing(t: np.ndarray, v: np.ndarray, level: float) -> float:
    """The first time ``v`` reaches ``level``, interpolated linearly; NaN when it never does."""
    idx = np.flatnonzero(v >= level)
    if idx.size == 0:
        return math.nan
    i = int(idx[0])
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (level - v[i - 1]) / (v[i] - v[i - 1]) * (t[i] - t[i - 1]))


class PurModel:
    """Polyurethane foam moulding, 0D (Baser & Khakhar plus mould heat exchange, vents and hardness)."""

    name: ClassVar[str] = "pur-foam"
    version: ClassVar[str] = "1.0.0"
    inputs: ClassVar[dict[str, str]] = {"mould_temperature": "degC"}
    # measured vent condition (1 clean, 0 blocked), e.g. from a pressure-decay check; else the scenario's setting
    optional_inputs: ClassVar[dict[str, str]] = {"vent_efficiency": "dimensionless"}
    outputs: ClassVar[dict[str, str]] = {
        "alpha": "dimensionless", "t_core": "degC", "p_mould": "bar", "density": "kg/m^3",
        "viscosity": "Pa*s", "hardness": "dimensionless", "fill": "dimensionless",
        "t_gel": "s", "t_demold": "s", "hardness_demold": "dimensionless", "hardness_24h": "dimensionless",
        "density_moulded": "kg/m^3", "margin_s": "s", "p_max": "bar", "t_core_max": "degC",
    }
    Parameters: ClassVar[type[BaseModel]] = PurScenario
    shot_event: ClassVar[str] = "shot_start"  # the event that opens a run

    def run(self, inputs: RunInputs, params: BaseModel, solver: SolverSpec) -> RunOutputs:
        scenario = params if isinstance(params, PurScenario) else PurScenario.model_validate(params.model_dump())
        if solver.backend == "rk4" and (solver.max_step_s or 0.0) > RK4_MAX_STEP_S:
            return RunOutputs({}, {}, ok=False, message=(
                f"solver.max_step_s: must be at most {RK4_MAX_STEP_S:g} s for rk4 on this model "
                f"(got {solver.max_step_s:g}); a longer fixed step is not accurate to 0.1 K"))
        t_m, problem = self._mould_temperature(inputs)
        if not problem:
            scenario, problem = self._vent_efficiency(inputs, scenario)
        if problem:
            return RunOutputs({}, {}, ok=False, message=problem)
        traj = simulate(scenario, solver, t_m)
        if not traj.ok:
            return RunOutputs({}, {}, ok=False, message=f"the solve failed ({solver.backend}): {traj.message}")
        return outputs_of(traj)

    def _vent_efficiency(self, inputs: RunInputs, scenario: PurScenario) -> tuple[PurScenario, str]:
        """The shot's vent efficiency: the newest reading of the run so far, held for the whole shot (the
        vents' state changes between shots, not within one); without the input, the scenario's."""
        if "vent_efficiency" not in inputs.series:
            return scenario, ""
        t, v = (np.asarray(a, dtype=float) for a in inputs.series["vent_efficiency"])
        if v.size == 0:
            return scenario, "vent_efficiency: no reading for this shot yet"
        last = float(v[-1])
        if not 0.0 <= last <= 1.0:  # False for NaN
            return scenario, (f"vent_efficiency: must be 0..1, 1 clean and 0 blocked (got {last:g} at "
                              f"t = {float(t[-1]):.1f} s)")
        return scenario.model_copy(update={"vent_efficiency": last}), ""

    def _mould_temperature(self, inputs: RunInputs) -> tuple[Callable[[float], float] | None, str]:
        if "mould_temperature" not in inputs.series:
            return None, ""  # an offline simulation: the scenario's mould temperature
        t, v = (np.asarray(a, dtype=float) for a in inputs.series["mould_temperature"])
        if t.size == 0 or t.size != v.size:
            return None, "mould_temperature: no reading for this shot yet"
        bad = ~np.isfinite(v) | ~np.isfinite(t)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return None, f"mould_temperature: a reading is not a number (got {float(v[i])} at t = {t[i]:.1f} s)"
        lo, hi = MOULD_T_RANGE_C
        out = (v < lo) | (v > hi)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            return None, f"mould_temperature: must be {lo:g}..{hi:g} degC (got {v[i]:g} at t = {t[i]:.1f} s)"
        return mould_temperature_function(t, v), ""


def outputs_of(traj: Trajectory) -> RunOutputs:
    """The model's series and scalars from a solved shot."""
    eq, t, y, s = traj.eq, traj.t, traj.y, traj.eq.s
    derived = [eq.derived(row) for row in y]
    alpha = y[:, 0]
    t_core = y[:, 2] - 273.15
    p_bar = np.array([d.p_pa for d in derived]) / 1e5
    rho = np.array([d.rho_foam_kg_m3 for d in derived])
    fill = np.array([d.fill for d in derived])
    hardness = np.array([eq.hardness(a, r) for a, r in zip(alpha, rho, strict=True)])
    # Castro-Macosko diverges at the gel point: past it the viscosity is infinite (a gelled foam), never a
    # held last value
    visc = np.array([eq.viscosity(a, tk) if a < eq.m.x_gel else math.inf
                     for a, tk in zip(alpha, y[:, 2], strict=True)])
    t_alpha = _first_crossing(t, alpha, s.alpha_demold)
    t_hard = _first_crossing(t, hardness, s.hardness_demold)
    t_demold = max(t_alpha, t_hard) if not (math.isnan(t_alpha) or math.isnan(t_hard)) else math.nan
    message = ""
    if math.isnan(t_demold):
        rho_end, h_end = float(rho[-1]), float(hardness[-1])
        message = (f"demould not reached within {s.horizon_s:g} s (cure {alpha[-1]:.3f} of {s.alpha_demold:g}, "
                   f"hardness {h_end:.1f} of {s.hardness_demold:g} at {rho_end:.1f} kg/m3)")
        rho_d = rho_end
        h_d = math.nan
    else:
        rho_d = float(np.interp(t_demold, t, rho))
        h_d = float(np.interp(t_demold, t, hardness))
    scalars = {
        "t_gel": traj.t_gel, "t_demold": t_demold, "hardness_demold": h_d,
        "hardness_24h": eq.hardness(eq.m.x_oh_ultimate, rho_d), "density_moulded": rho_d,
        "margin_s": s.cycle_time_s - t_demold, "p_max": float(p_bar.max()), "t_core_max": float(t_core.max()),
    }
    series = {"alpha": (t, alpha), "t_core": (t, t_core), "p_mould": (t, p_bar), "density": (t, rho),
              "viscosity": (t, visc), "hardness": (t, hardness), "fill": (t, fill)}
    return RunOutputs(series, scalars, ok=True, message=message)
