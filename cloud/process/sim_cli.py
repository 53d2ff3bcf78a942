"""``twincloud process run-sim|optimize``: the PUR model offline, on this machine (no running service needed).

``run-sim SCENARIO`` solves one shot and prints its KPIs (a table, or
``--json``), saves the series as CSV and the KPIs as JSON (``--out DIR``) and
writes a Markdown report with plots (``--report FILE.md``). ``optimize
SCENARIO`` searches the settings given as ``--bound KEY=LOW:HIGH`` (or a spec
file) for the shortest feasible cycle, with one progress line per generation
or batch on stderr.

Exit codes: 0 done (optimize: a feasible setting found); 1 optimize found
nothing feasible (the binding constraints are printed) or a solve failed;
2 refused input (an unknown scenario, bounds out of range, an empty search
space); 78 a bad scenarios file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.errors import InputError, Problem

__all__ = ["add_sim_commands"]


def _solver(args: argparse.Namespace) -> Any:
    from cloud.process.model import SolverSpec

    try:
        return SolverSpec(backend=args.backend, rtol=args.rtol, atol=args.atol)
    except ValidationError as exc:
        raise InputError([Problem(f"--{e['loc'][0]}", f"{e['msg']} (got {e.get('input')!r})")
                          for e in exc.errors()]) from None


def _run_sim(args: argparse.Namespace) -> int:
    from cloud.process import simreport

    scenario = simreport.get_scenario(args.scenario, args.scenarios)
    solver = _solver(args)
    out = simreport.run_scenario(scenario, solver)
    if not out.ok:
        print(f"twincloud: {args.scenario}: {out.message}", file=sys.stderr)
        return 1
    written: list[Path] = []
    if args.out:
        written += simreport.write_files(Path(args.out), args.scenario, scenario, solver, out)
    if args.report:
        written += simreport.write_report(Path(args.report), args.scenario, scenario, solver, out)
    if args.json:
        print(json.dumps({**simreport.summary(args.scenario, scenario, solver, out),
                          "files": [str(p) for p in written]}, indent=2))
        return 0
    print(f"{args.scenario}: {scenario.material}, {solver.backend} rtol {solver.rtol:g}")
    for label, value, unit in simreport.kpi_table(simreport.kpis(scenario, out)):
        print(f"  {label:<28} {value:>12} {unit}")
    if out.message:
        print(f"  note: {out.message}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _bound(text: str) -> tuple[str, tuple[float, float]]:
    key, sep, rng = text.partition("=")
    lo, sep2, hi = rng.partition(":")
    try:
        if not (sep and sep2):
            raise ValueError
        return key.strip(), (float(lo), float(hi))
    except ValueError:
        raise InputError(f"expected KEY=LOW:HIGH, e.g. shot_mass_kg=0.25:0.4 (got {text!r})", path="--bound") from None


def _spec(args: argparse.Namespace) -> Any:
    from cloud.process.optimize import OptimizeSpec

    data: dict[str, Any] = {}
    if args.spec:
        try:
            text = Path(args.spec).read_text(encoding="utf-8")
            data = json.loads(text) if args.spec.endswith(".json") else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the spec file {args.spec}: {exc}", path="--spec") from None
    bounds = dict(data.get("bounds", {}))
    bounds.update(_bound(b) for b in args.bound or [])
    data["bounds"] = bounds
    constraints = dict(data.get("constraints", {}))
    for opt, key in (("p_max", "p_max_bar"), ("density_min", "density_min_kg_m3"),
                     ("density_max", "density_max_kg_m3"), ("hardness_24h_min", "hardness_24h_min"),
                     ("risk_max", "risk_max"), ("cycle_time_max", "cycle_time_max_s")):
        if getattr(args, opt) is not None:
            constraints[key] = getattr(args, opt)
    data["constraints"] = constraints
    for opt in ("method", "max_candidates", "budget_s", "seed", "index_s", "backend"):
        if getattr(args, opt) is not None:
            data[opt] = getattr(args, opt)
    try:
        return OptimizeSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError([Problem(".".join(str(p) for p in e["loc"]), f"{e['msg']} (got {e.get('input')!r})")
                          for e in exc.errors()]) from None


def _optimize(args: argparse.Namespace) -> int:
    from cloud.process import simreport
    from cloud.process.optimize import optimize

    scenario = simreport.get_scenario(args.scenario, args.scenarios)
    spec = _spec(args)
    result = optimize(scenario, spec, name=args.scenario,
                      progress=lambda p: print(p.line(spec.method), file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0 if result.feasible else 1
    print(f"{args.scenario}: {result.method}, {result.evaluated} candidates in {result.elapsed_s:.2f} s "
          f"(stopped by {result.stopped_by}), {result.feasible_count} feasible")
    if result.best is not None:
        best = result.best
        print(f"shortest feasible cycle: {best.cycle_s:.2f} s (demould {best.kpis['t_demold']:.2f} s + index "
              f"{spec.index_s:g} s), checked at full accuracy")
        for key, value in best.settings.items():
            print(f"  {key:<24} {value:.4g}")
        for key in ("p_max", "density_moulded", "hardness_demold", "hardness_24h", "t_core_max"):
            v = best.kpis.get(key, math.nan)
            print(f"  {key:<24} {v:.4g}")
        print(f"  {'risk':<24} {best.risk:.3f} " + ", ".join(f"{k} {v:.2f}" for k, v in best.risk_parts.items()))
        return 0
    print(result.message)
    for violation in result.binding:
        print(f"  binding: {violation}")
    return 1


def add_sim_commands(group: Any) -> None:
    """Add ``run-sim`` and ``optimize`` to the ``process`` subparsers."""
    backends = ["rk4", "lsoda", "bdf", "radau", "cvode", "jax"]

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("scenario", metavar="SCENARIO", help="a scenario name (shipped, or in --scenarios)")
        p.add_argument("--scenarios", metavar="FILE", help="a scenarios TOML file instead of the shipped ones")
        p.add_argument("--json", action="store_true", help="print JSON")

    run = group.add_parser("run-sim", help="simulate one shot of a PUR scenario and print its KPIs")
    common(run)
    run.add_argument("--backend", choices=backends, default="cvode")
    run.add_argument("--rtol", type=float, default=1e-6)
    run.add_argument("--atol", type=float, default=1e-9)
    run.add_argument("--out", metavar="DIR", help="save SCENARIO.csv (series) and SCENARIO.json (KPIs) there")
    run.add_argument("--report", metavar="FILE.md", help="write a Markdown report with PNG plots beside it")
    run.set_defaults(handler=_run_sim)
    opt = group.add_parser("optimize", help="search settings for the shortest feasible cycle of a PUR scenario")
    common(opt)
    opt.add_argument("--bound", action="append", metavar="KEY=LOW:HIGH",
                     help="a setting to search, e.g. mould_temperature_c=30:80 (repeatable)")
    opt.add_argument("--spec", metavar="FILE", help="a TOML or JSON spec (bounds, constraints, method, limits)")
    opt.add_argument("--method", choices=["de", "random"])
    opt.add_argument("--max-candidates", type=int)
    opt.add_argument("--budget-s", type=float, help="wall-time limit, s")
    opt.add_argument("--seed", type=int)
    opt.add_argument("--index-s", type=float, help="handling time added to the demould time, s")
    opt.add_argument("--backend", choices=backends)
    opt.add_argument("--p-max", type=float, help="bar absolute")
    opt.add_argument("--density-min", type=float, help="kg/m3")
    opt.add_argument("--density-max", type=float, help="kg/m3")
    opt.add_argument("--hardness-24h-min", type=float, help="Shore A")
    opt.add_argument("--risk-max", type=float, help="0..1")
    opt.add_argument("--cycle-time-max", type=float, help="s (default: the scenario's cycle_time_s)")
    opt.set_defaults(handler=_optimize)
