"""PUR model benchmark: `python bench/bench_process.py [--json] [--repeat N]` prints the ODE backend table.

For each material system (its first shipped scenario: measured-mould heat
exchange, vents and blowing agent all active, 600-900 s simulated, output
every 1 s, 11 states) and each backend at the binding defaults (rtol 1e-6,
atol 1e-9; RK4 at its default fixed step), it prints the median wall time of
one shot (ms), the largest |ΔT_core| against a Radau reference at rtol 1e-11
(K) and the gel-time error (s). The acceptance limits are 0.1 K and 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.process.model import SolverSpec  # noqa: E402
from cloud.process.ode import DEFAULT_RK4_STEP_S  # noqa: E402
from cloud.process.pur import builtin_scenarios, material_names, simulate  # noqa: E402

BACKENDS = ["rk4", "lsoda", "bdf", "radau", "cvode"]
REFERENCE = SolverSpec(backend="radau", rtol=1e-11, atol=1e-12)
LIMIT_T_K, LIMIT_GEL_S = 0.1, 0.1


def measure(repeat: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    scenarios = sorted(builtin_scenarios().items())
    for material in material_names():
        name, scenario = next((n, s) for n, s in scenarios if s.material == material)
        ref = simulate(scenario, REFERENCE)
        for backend in BACKENDS:
            spec = SolverSpec(backend=backend)  # type: ignore[arg-type]
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                traj = simulate(scenario, spec)
                times.append((time.perf_counter() - t0) * 1e3)
            rows.append({
                "material": material, "scenario": name, "backend": backend,
                "ms_per_shot": round(statistics.median(times), 2), "nfev": traj.nfev, "ok": traj.ok,
                "max_abs_dT_K": float(np.max(np.abs(traj.y[:, 2] - ref.y[:, 2]))),
                "gel_time_s": round(traj.t_gel, 3), "gel_time_error_s": abs(traj.t_gel - ref.t_gel),
                "reference_gel_time_s": round(ref.t_gel, 3),
            })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=5, help="shots timed per backend (median)")
    args = parser.parse_args()
    rows = measure(args.repeat)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"PUR model, one shot per backend (rtol 1e-6, atol 1e-9, rk4 step {DEFAULT_RK4_STEP_S} s) "
          f"against Radau rtol 1e-11")
    print(f"{'material':<15} {'backend':<7} {'ms/shot':>8} {'nfev':>6} {'max|dT| K':>10} {'gel s':>8} "
          f"{'gel err s':>10}")
    missed = 0
    for r in rows:
        within = r["max_abs_dT_K"] < LIMIT_T_K and r["gel_time_error_s"] < LIMIT_GEL_S  # type: ignore[operator]
        missed += not within
        print(f"{r['material']:<15} {r['backend']:<7} {r['ms_per_shot']:>8.1f} {r['nfev']:>6} "
              f"{r['max_abs_dT_K']:>10.1e} {r['gel_time_s']:>8.2f} {r['gel_time_error_s']:>10.1e}"
              f"{'' if within else '  OUTSIDE 0.1 K / 0.1 s'}")
    print(f"limits: |dT| < {LIMIT_T_K} K and gel-time error < {LIMIT_GEL_S} s: "
          f"{'all met' if not missed else f'{missed} MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
