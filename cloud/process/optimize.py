"""The moulding optimizer: search process settings within bounds for the shortest cycle that meets the constraints.

A candidate is a set of scenario settings (mould temperature, shot mass,
vent area, ...). It is simulated with the PUR model and judged:

- **cycle time** = the earliest demould (cure and hardness thresholds met,
  the demould time is therefore not searched: any later one only adds time)
  plus ``index_s``, the fixed handling time (open, demould, clean, pour, close);
- **constraints**: the demould is reached, ``t_demold <= cycle_time_max_s``,
  ``p_max <= p_max_bar``, ``hardness_24h >= hardness_24h_min``, the moulded
  density within ``[density_min, density_max]``, and the defect-risk score
  ``risk <= risk_max``;
- **defect risk** (0 none .. 1 certain), the worst of three parts, each a
  linear ramp: pressure (p_max from ``p_ramp_from`` of the limit up to the
  limit), under-fill (the foam's share of the mould at demould, shot mass
  over mould volume divided by the moulded density, from ``fill_ok`` down to
  ``fill_short``) and cure margin (the demould's margin to the longest cycle,
  from ``margin_fraction`` of it down to none: a demould at the edge of the
  allowed cycle fails with the next cold morning).

Constraints are handled by Deb's feasibility rules, written as one penalty
so that any search method can use them: a feasible candidate scores its
cycle time; an infeasible one scores ``PENALTY_BASE_S`` plus its total
violation, each constraint's violation divided by its limit. So any feasible
candidate beats any infeasible one, and among infeasible ones the least
violating wins. When nothing is feasible, the constraints violated by the
least-violating candidate are the binding ones, reported with the amounts.

Methods: ``random`` (uniform samples, the baseline) and ``de`` (scipy's
differential evolution from a Latin hypercube). Candidates are solved fast
(the chosen backend at ``candidate_rtol``, a coarse output grid, the horizon
cut to 1.25 times the longest cycle); the best ones are then re-checked at
full accuracy (rtol 1e-6, the scenario's grid and horizon), and the first
that stays feasible is the answer. The search stops at ``max_candidates``
or ``budget_s``, whichever comes first, and ``budget_s`` bounds the re-check
too: the first re-check solve always runs (an answer is never unchecked),
a further one only while the budget lasts. So a search ends within
``budget_s`` plus one candidate's solve and one full-accuracy solve.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from cloud.process.model import Backend, SolverSpec
from cloud.process.pur.model import outputs_of, simulate
from cloud.process.pur.scenario import PurScenario
from shared.configbase import StrictModel
from shared.errors import InputError, Problem

__all__ = ["SEARCHABLE", "Candidate", "Constraints", "OptimizeResult", "OptimizeSpec", "Progress", "RiskSettings",
           "Violation", "evaluate", "optimize"]

SEARCHABLE = ("mould_temperature_c", "initial_temperature_c", "shot_mass_kg", "vent_area_mm2", "vent_efficiency",
              "ba_fraction_kg_kg")
PENALTY_BASE_S = 1.0e6  # above any cycle time: an infeasible candidate never beats a feasible one
FULL_ACCURACY = {"rtol": 1e-6, "atol": 1e-9}
RECHECK = 8  # how many of the best coarse candidates the full-accuracy re-check may try


class Constraints(StrictModel):
    """What a good moulding must meet. The demould thresholds themselves are the scenario's (or overridden here)."""

    p_max_bar: float = Field(default=3.0, gt=0, le=100, description="highest mould pressure, bar absolute")
    hardness_24h_min: float = Field(default=0.0, ge=0, le=100, description="Shore A after a day")
    density_min_kg_m3: float = Field(default=0.0, ge=0, le=1200)
    density_max_kg_m3: float = Field(default=1200.0, gt=0, le=1200)
    cycle_time_max_s: float | None = Field(default=None, gt=0, le=7200,
                                           description="latest demould; default: the scenario's cycle_time_s")
    alpha_demold: float | None = Field(default=None, gt=0, le=1, description="cure at demould (scenario's if unset)")
    hardness_demold: float | None = Field(default=None, ge=0, le=100, description="Shore A at demould")
    risk_max: float = Field(default=0.5, ge=0, le=1, description="highest acceptable defect-risk score")

    @model_validator(mode="after")
    def _window(self) -> Constraints:
        if self.density_min_kg_m3 >= self.density_max_kg_m3:
            raise ValueError(f"density_min_kg_m3 must be below density_max_kg_m3 (got {self.density_min_kg_m3:g} "
                             f"and {self.density_max_kg_m3:g}): the density window is empty")
        return self


class RiskSettings(StrictModel):
    """The ramps of the defect-risk score (module docstring)."""

    p_ramp_from: float = Field(default=0.85, ge=0, lt=1, description="share of p_max_bar where pressure risk starts")
    fill_ok: float = Field(default=0.98, gt=0, le=1.5, description="fill at demould with no under-fill risk")
    fill_short: float = Field(default=0.90, ge=0, lt=1.5, description="fill at demould that is a short shot")
    margin_fraction: float = Field(default=0.1, ge=0, le=1, description="cycle margin below which cure risk rises")

    @model_validator(mode="after")
    def _ramps(self) -> RiskSettings:
        if self.fill_short >= self.fill_ok:
            raise ValueError(f"fill_short must be below fill_ok (got {self.fill_short:g} and {self.fill_ok:g})")
        return self


class OptimizeSpec(StrictModel):
    """One optimization: the settings to search with their bounds, the constraints, the method and its limits."""

    bounds: dict[str, tuple[float, float]] = Field(description=f"setting -> [low, high]; settings: {SEARCHABLE}")
    constraints: Constraints = Constraints()
    risk: RiskSettings = RiskSettings()
    index_s: float = Field(default=30.0, ge=0, le=3600, description="handling time added to the demould time")
    method: Literal["de", "random"] = "de"
    max_candidates: int = Field(default=400, ge=1, le=20_000)
    budget_s: float = Field(default=60.0, gt=0, le=3600, description="wall-time limit of the search")
    seed: int | None = Field(default=0, description="random seed (null: a fresh one)")
    backend: Backend = Field(default="cvode", description="candidates and the re-check (fastest adequate here)")
    candidate_rtol: float = Field(default=1e-4, gt=0, le=1e-2, description="candidates' tolerance (coarse)")
    candidate_step_s: float = Field(default=5.0, ge=0.1, le=60, description="candidates' output grid, s")
    batch: int = Field(default=20, ge=1, le=1000, description="random search: candidates per progress line")


@dataclass(frozen=True)
class Violation:
    """A constraint not met: the quantity, its value, the limit and by how much (in the quantity's unit)."""

    name: str
    value: float
    limit: float
    amount: float
    unit: str
    normalized: float

    def __str__(self) -> str:
        if self.name == "demould":
            return f"demould: not reached within the horizon ({self.value:.3g} of the way; short by {self.amount:.3g})"
        side = "above the maximum" if self.value > self.limit else "below the minimum"
        u = f" {self.unit}" if self.unit else ""
        return f"{self.name}: {self.value:.4g}{u} is {self.amount:.3g}{u} {side} {self.limit:.4g}{u}"


@dataclass
class Candidate:
    """One evaluated set of settings."""

    settings: dict[str, float]
    cycle_s: float
    kpis: dict[str, float]
    risk: float
    risk_parts: dict[str, float]
    violations: list[Violation]
    ok: bool = True
    message: str = ""
    nfev: int = 0  # evaluations of the model's equations this candidate cost

    @property
    def feasible(self) -> bool:
        return self.ok and not self.violations

    @property
    def total_violation(self) -> float:
        return math.inf if not self.ok else sum(v.normalized for v in self.violations)

    @property
    def score(self) -> float:
        """Deb's rules as one number: the cycle when feasible, else a base above any cycle plus the violation."""
        if self.feasible:
            return self.cycle_s
        return PENALTY_BASE_S * (2.0 if not self.ok else 1.0) + min(self.total_violation, PENALTY_BASE_S / 2)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "cycle_s": _num(self.cycle_s), "feasible": self.feasible,
                "kpis": {k: _num(v) for k, v in self.kpis.items()}, "risk": _num(self.risk),
                "risk_parts": {k: _num(v) for k, v in self.risk_parts.items()},
                "violations": [{**asdict(v), "text": str(v)} for v in self.violations], "ok": self.ok,
                "message": self.message, "nfev": self.nfev}


@dataclass(frozen=True)
class Progress:
    """One progress step: a generation (de) or a batch (random)."""

    step: int
    evaluated: int
    feasible: int
    best_cycle_s: float | None
    elapsed_s: float

    def line(self, method: str) -> str:
        best = "none feasible yet" if self.best_cycle_s is None else f"best cycle {self.best_cycle_s:.2f} s"
        what = "generation" if method == "de" else "batch"
        return (f"{what} {self.step}: {self.evaluated} candidates, {self.feasible} feasible, {best} "
                f"({self.elapsed_s:.1f} s)")


@dataclass
class OptimizeResult:
    """The answer: the best candidate at full accuracy, or the binding constraints when nothing is feasible."""

    scenario: str
    method: str
    feasible: bool
    best: Candidate | None
    best_coarse: Candidate | None
    binding: list[Violation]
    evaluated: int
    feasible_count: int
    elapsed_s: float
    stopped_by: str
    message: str
    history: list[Progress] = field(default_factory=list)
    least_violating: Candidate | None = None  # when nothing is feasible: re-checked at full accuracy
    rechecked: int = 0  # candidates solved again at full accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "method": self.method, "feasible": self.feasible,
                "best": None if self.best is None else self.best.to_dict(),
                "best_coarse": None if self.best_coarse is None else self.best_coarse.to_dict(),
                "binding": [{**asdict(v), "text": str(v)} for v in self.binding],
                "least_violating": None if self.least_violating is None else self.least_violating.to_dict(),
                "evaluated": self.evaluated, "feasible_count": self.feasible_count,
                "elapsed_s": round(self.elapsed_s, 3), "stopped_by": self.stopped_by, "rechecked": self.rechecked,
                "message": self.message}


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _field_range(key: str) -> tuple[float, float]:
    lo, hi = -math.inf, math.inf
    for meta in PurScenario.model_fields[key].metadata:
        for attr in ("ge", "gt"):
            if getattr(meta, attr, None) is not None:
                lo = float(getattr(meta, attr))
        for attr in ("le", "lt"):
            if getattr(meta, attr, None) is not None:
                hi = float(getattr(meta, attr))
    return lo, hi


def check_spec(base: PurScenario, spec: OptimizeSpec) -> None:
    """Refuse a search space that is empty, names an unknown setting or leaves the scenario's ranges."""
    problems: list[Problem] = []
    if not spec.bounds:
        problems.append(Problem("bounds", f"the search space is empty: give at least one setting to search as "
                                          f"[low, high]; searchable: {', '.join(SEARCHABLE)}"))
    for key, (lo, hi) in spec.bounds.items():
        path = f"bounds.{key}"
        if key not in SEARCHABLE:
            problems.append(Problem(path, f"not a searchable setting; searchable: {', '.join(SEARCHABLE)}"))
            continue
        flo, fhi = _field_range(key)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            problems.append(Problem(path, f"bounds must be numbers (got [{lo}, {hi}])"))
        elif lo >= hi:
            problems.append(Problem(path, f"low must be below high: the range is empty (got [{lo:g}, {hi:g}])"))
        elif lo < flo or hi > fhi:
            problems.append(Problem(path, f"must lie within {flo:g}..{fhi:g} (got [{lo:g}, {hi:g}])"))
        else:
            for corner in (lo, hi):
                try:
                    _scenario(base, spec, {key: corner})
                except InputError as exc:
                    problems.extend(Problem(path, f"{corner:g} is refused by the scenario: {p.message}")
                                    for p in exc.problems)
    if problems:
        raise InputError(problems)


def _scenario(base: PurScenario, spec: OptimizeSpec, settings: dict[str, float]) -> PurScenario:
    update: dict[str, Any] = dict(settings)
    c = spec.constraints
    if c.alpha_demold is not None:
        update["alpha_demold"] = c.alpha_demold
    if c.hardness_demold is not None:
        update["hardness_demold"] = c.hardness_demold
    try:
        return PurScenario.model_validate({**base.model_dump(), **update})
    except ValidationError as exc:
        raise InputError([Problem(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]) from None


def cycle_limit(base: PurScenario, spec: OptimizeSpec) -> float:
    return spec.constraints.cycle_time_max_s or base.cycle_time_s


def evaluate(base: PurScenario, spec: OptimizeSpec, settings: dict[str, float], *, full: bool = False) -> Candidate:
    """Simulate one candidate (coarse, or at full accuracy) and judge it against the constraints."""
    scenario = _scenario(base, spec, settings)
    t_max = cycle_limit(base, spec)
    # Past 1.25 x the longest cycle nothing is judged (a later demould is infeasible anyway), so neither the
    # candidates nor the re-check solve further: a day-long horizon would cost a re-check minutes past the budget.
    horizon = max(10.0, min(scenario.horizon_s, 1.25 * t_max))
    if full:
        solver = SolverSpec(backend=spec.backend, **FULL_ACCURACY)
        traj = simulate(scenario, solver, horizon_s=horizon, output_step_s=min(scenario.output_step_s, horizon / 10))
    else:
        solver = SolverSpec(backend=spec.backend, rtol=spec.candidate_rtol, atol=spec.candidate_rtol * 1e-3)
        traj = simulate(scenario, solver, horizon_s=horizon, output_step_s=min(spec.candidate_step_s, horizon / 10))
    if not traj.ok:
        return Candidate(settings, math.inf, {}, 1.0, {}, [], ok=False, message=traj.message, nfev=traj.nfev)
    out = outputs_of(traj)
    kpis = dict(out.scalars)
    kpis["alpha_end"] = float(out.series["alpha"][1][-1])
    kpis["hardness_end"] = float(out.series["hardness"][1][-1])
    kpis["fill_demold"] = (scenario.shot_mass_kg / (scenario.mould_volume_l / 1000.0)) / kpis["density_moulded"]
    risk_parts = _risk(kpis, spec, t_max)
    risk = max(risk_parts.values())
    violations = _violations(kpis, scenario, spec, t_max, risk)
    return Candidate(settings, kpis["t_demold"] + spec.index_s, kpis, risk, risk_parts, violations,
                     message=out.message, nfev=traj.nfev)


def _ramp(x: float, zero_at: float, one_at: float) -> float:
    """0 at ``zero_at``, 1 at ``one_at``, linear between, clipped."""
    if not math.isfinite(x):
        return 1.0
    return float(min(1.0, max(0.0, (x - zero_at) / (one_at - zero_at))))


def _risk(k: dict[str, float], spec: OptimizeSpec, t_max: float) -> dict[str, float]:
    r, c = spec.risk, spec.constraints
    margin = t_max - k["t_demold"]
    return {"pressure": _ramp(k["p_max"], r.p_ramp_from * c.p_max_bar, c.p_max_bar),
            "under_fill": _ramp(k["fill_demold"], r.fill_ok, r.fill_short),
            "cure_margin": _ramp(margin, r.margin_fraction * t_max, 0.0) if r.margin_fraction > 0
            else float(margin < 0)}


def _violations(k: dict[str, float], s: PurScenario, spec: OptimizeSpec, t_max: float,
                risk: float) -> list[Violation]:
    c = spec.constraints
    out: list[Violation] = []
    if math.isnan(k["t_demold"]):
        got = min(k["alpha_end"] / s.alpha_demold,
                  k["hardness_end"] / s.hardness_demold if s.hardness_demold > 0 else 1.0)
        out.append(Violation("demould", got, 1.0, 1.0 - got, "", 1.0 + (1.0 - got)))
        return out

    def over(name: str, value: float, limit: float, unit: str) -> None:
        if value > limit:
            out.append(Violation(name, value, limit, value - limit, unit, (value - limit) / max(abs(limit), 1e-9)))

    def under(name: str, value: float, limit: float, unit: str) -> None:
        if value < limit:
            out.append(Violation(name, value, limit, limit - value, unit, (limit - value) / max(abs(limit), 1e-9)))

    over("t_demold", k["t_demold"], t_max, "s")
    over("p_max", k["p_max"], c.p_max_bar, "bar")
    under("hardness_24h", k["hardness_24h"], c.hardness_24h_min, "Shore A")
    under("density_moulded", k["density_moulded"], c.density_min_kg_m3, "kg/m3")
    over("density_moulded", k["density_moulded"], c.density_max_kg_m3, "kg/m3")
    over("risk", risk, c.risk_max, "")
    return out


class _Stop(Exception):
    """The candidate or time budget is used up."""


class _Search:
    """The archive of every candidate and the budget; the objective every method calls."""

    def __init__(self, base: PurScenario, spec: OptimizeSpec, progress: Callable[[Progress], None] | None,
                 clock: Callable[[], float], stop: threading.Event | None = None) -> None:
        self.base, self.spec, self.progress, self.clock, self.stop = base, spec, progress, clock, stop
        self.keys = list(spec.bounds)
        self.lo = np.array([spec.bounds[k][0] for k in self.keys])
        self.hi = np.array([spec.bounds[k][1] for k in self.keys])
        self.archive: list[Candidate] = []
        self.started = clock()
        self.stopped_by = "converged"
        self.steps: list[Progress] = []

    def objective(self, x: np.ndarray) -> float:
        if len(self.archive) >= self.spec.max_candidates:
            self.stopped_by = "candidates"
            raise _Stop
        if self.stop is not None and self.stop.is_set():
            self.stopped_by = "cancelled"
            raise _Stop
        if self.over_budget():
            self.stopped_by = "budget"
            raise _Stop
        settings = {k: float(v) for k, v in zip(self.keys, np.clip(x, self.lo, self.hi), strict=True)}
        cand = evaluate(self.base, self.spec, settings)
        self.archive.append(cand)
        return cand.score

    def elapsed(self) -> float:
        return self.clock() - self.started

    def over_budget(self) -> bool:
        """The time is up, or the search was called off (``stop``: its client left, the service stops)."""
        return self.elapsed() > self.spec.budget_s or (self.stop is not None and self.stop.is_set())

    def report(self) -> None:
        feasible = [c for c in self.archive if c.feasible]
        step = Progress(len(self.steps) + 1, len(self.archive), len(feasible),
                        min(c.cycle_s for c in feasible) if feasible else None, self.elapsed())
        self.steps.append(step)
        if self.progress is not None:
            self.progress(step)


def _run_random(search: _Search, rng: np.random.Generator) -> None:
    spec = search.spec
    while True:
        for x in rng.uniform(search.lo, search.hi, size=(spec.batch, len(search.keys))):
            search.objective(x)
        search.report()


def _run_de(search: _Search, seed: int | None) -> None:
    from scipy.optimize import differential_evolution

    def each_generation(intermediate_result: Any) -> None:
        search.report()

    differential_evolution(search.objective, list(zip(search.lo, search.hi, strict=True)), init="latinhypercube",
                           popsize=max(5, 30 // len(search.keys)), maxiter=100_000, tol=1e-4, atol=0.0,
                           mutation=(0.5, 1.0), recombination=0.7, polish=False, seed=seed,
                           callback=each_generation)


def optimize(base: PurScenario, spec: OptimizeSpec, *, name: str = "",
             progress: Callable[[Progress], None] | None = None,
             clock: Callable[[], float] = time.perf_counter,
             stop: threading.Event | None = None) -> OptimizeResult:
    """Search ``spec.bounds`` around ``base`` for the shortest feasible cycle (module docstring).

    ``clock`` (seconds, monotonic) measures the budget. ``stop``, once set, ends the search at the next
    candidate as a spent budget does (``stopped_by`` ``cancelled``)."""
    check_spec(base, spec)
    search = _Search(base, spec, progress, clock, stop)
    try:
        if spec.method == "random":
            _run_random(search, np.random.default_rng(spec.seed))
        else:
            _run_de(search, spec.seed)
    except _Stop:
        pass
    if not search.steps or search.steps[-1].evaluated != len(search.archive):
        search.report()
    return _conclude(name, search)


def _conclude(name: str, search: _Search) -> OptimizeResult:
    spec, archive = search.spec, search.archive
    feasible = sorted((c for c in archive if c.feasible), key=lambda c: c.cycle_s)
    common: dict[str, Any] = {"scenario": name, "method": spec.method, "evaluated": len(archive),
                              "feasible_count": len(feasible), "stopped_by": search.stopped_by,
                              "history": search.steps}
    rechecked = 0
    for coarse in feasible[:RECHECK]:
        if rechecked and search.over_budget():  # the first re-check always runs; the others within the budget
            break
        fine = evaluate(search.base, spec, coarse.settings, full=True)
        rechecked += 1
        if fine.feasible:
            return OptimizeResult(feasible=True, best=fine, best_coarse=coarse, binding=[],
                                  elapsed_s=search.elapsed(), rechecked=rechecked,
                                  message=f"shortest feasible cycle {fine.cycle_s:.2f} s", **common)
    if feasible:
        cut = (f"; the budget of {spec.budget_s:g} s ran out after {rechecked}"
               if rechecked < min(RECHECK, len(feasible)) else "")
        return OptimizeResult(feasible=False, best=None, best_coarse=feasible[0], binding=[],
                              elapsed_s=search.elapsed(), rechecked=rechecked,
                              message=f"{len(feasible)} candidates were feasible on the coarse grid, but none of the "
                                      f"best {rechecked} stayed feasible at full accuracy{cut}: narrow the bounds, "
                                      f"loosen the constraints or allow more time", **common)
    least = min(archive, key=lambda c: (c.total_violation, c.cycle_s), default=None)
    if least is not None and least.ok:
        fine = evaluate(search.base, spec, least.settings, full=True)
        rechecked = 1
        least = fine if fine.ok and fine.violations else least  # the amounts at full accuracy
    binding = least.violations if least is not None else []
    text = "; ".join(str(v) for v in binding) if binding else (least.message if least else "no candidate ran")
    return OptimizeResult(feasible=False, best=None, best_coarse=None, binding=binding, elapsed_s=search.elapsed(),
                          least_violating=least, rechecked=rechecked,
                          message=f"no feasible setting in {len(archive)} candidates; binding at the least-violating "
                                  f"one: {text}", **common)
