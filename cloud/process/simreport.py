"""Offline runs of the PUR model and what they leave behind: the KPI table, CSV/JSON files and a Markdown report.

``run_scenario`` solves one shot of a named scenario; ``kpis`` picks the
figures a process engineer reads (peak core temperature, gel time, demould
time, hardness at demould and after a day, moulded density, peak pressure,
the margin to the cycle time); ``write_files`` saves the series as CSV and
the KPIs as JSON; ``write_report`` writes Markdown with PNG plots
(temperature, cure, pressure, density against time) beside it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from cloud.process.model import RunInputs, RunOutputs, SolverSpec
from cloud.process.pur import PurModel, PurScenario, builtin_scenarios, load_scenarios
from shared.errors import InputError

__all__ = ["KPI_ROWS", "SERIES_COLUMNS", "get_scenario", "kpis", "run_scenario", "write_files", "write_report"]

# (key, label, unit, format)
KPI_ROWS = [
    ("t_core_max", "peak core temperature", "degC", ".2f"),
    ("t_gel", "gel time", "s", ".2f"),
    ("t_demold", "demould time", "s", ".2f"),
    ("hardness_demold", "hardness at demould", "Shore A", ".2f"),
    ("hardness_24h", "hardness at 24 h", "Shore A", ".2f"),
    ("density_moulded", "moulded density", "kg/m3", ".2f"),
    ("p_max", "peak mould pressure", "bar", ".4f"),
    ("cycle_time_s", "cycle time allowed", "s", ".1f"),
    ("margin_s", "margin to the cycle time", "s", ".2f"),
]
# series name -> CSV column
SERIES_COLUMNS = {"t_core": "t_core_c", "alpha": "alpha", "p_mould": "p_mould_bar", "density": "density_kg_m3",
                  "hardness": "hardness_shore_a", "fill": "fill", "viscosity": "viscosity_pa_s"}


def get_scenario(name: str, path: str | Path | None = None) -> PurScenario:
    """A scenario by name from ``path`` (or the shipped ones); an unknown name lists the known ones."""
    known = load_scenarios(path) if path is not None else builtin_scenarios()
    if name not in known:
        where = f" in {path}" if path is not None else ""
        raise InputError(f"unknown scenario {name!r}{where}; known scenarios: {', '.join(sorted(known))}",
                         path="scenario")
    return known[name]


def run_scenario(scenario: PurScenario, solver: SolverSpec) -> RunOutputs:
    """One offline shot at the scenario's mould temperature."""
    return PurModel().run(RunInputs(start=0.0, series={}), scenario, solver)


def kpis(scenario: PurScenario, out: RunOutputs) -> dict[str, float | None]:
    values = {**out.scalars, "cycle_time_s": scenario.cycle_time_s}
    return {key: (None if values.get(key) is None or not math.isfinite(values[key]) else float(values[key]))
            for key, *_ in KPI_ROWS}


def kpi_table(k: dict[str, float | None]) -> list[tuple[str, str, str]]:
    """(label, value, unit) rows; a KPI that was not reached (no demould in the horizon) reads 'not reached'."""
    rows = []
    for key, label, unit, fmt in KPI_ROWS:
        value = k[key]
        rows.append((label, "not reached" if value is None else format(value, fmt), unit))
    return rows


def write_files(out_dir: Path, name: str, scenario: PurScenario, solver: SolverSpec, out: RunOutputs) -> list[Path]:
    """``<name>.csv`` (every series against time) and ``<name>.json`` (KPIs, scenario, solver, message)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t = out.series["t_core"][0]
    csv_path = out_dir / f"{name}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["t_s", *SERIES_COLUMNS.values()])
        cols = [out.series[s][1] for s in SERIES_COLUMNS]
        for i, ti in enumerate(t):
            writer.writerow([f"{ti:.6g}", *(f"{c[i]:.10g}" for c in cols)])
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(summary(name, scenario, solver, out), indent=2) + "\n", encoding="utf-8")
    return [csv_path, json_path]


def summary(name: str, scenario: PurScenario, solver: SolverSpec, out: RunOutputs) -> dict[str, Any]:
    return {"scenario": name, "model": f"{PurModel.name} {PurModel.version}", "kpis": kpis(scenario, out),
            "units": {key: unit for key, _, unit, _ in KPI_ROWS}, "ok": out.ok, "message": out.message,
            "settings": scenario.model_dump(), "solver": solver.model_dump()}


_PLOTS = [("temperature", "t_core", "core temperature, degC"), ("cure", "alpha", "cure (OH conversion)"),
          ("pressure", "p_mould", "mould pressure, bar abs"), ("density", "density", "foam density, kg/m3")]


def write_report(md_path: Path, name: str, scenario: PurScenario, solver: SolverSpec, out: RunOutputs) -> list[Path]:
    """A Markdown report with the KPIs, the settings and four plots (PNG files beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    md_path.parent.mkdir(parents=True, exist_ok=True)
    k = kpis(scenario, out)
    pngs: list[Path] = []
    for what, series, label in _PLOTS:
        t, v = out.series[series]
        fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
        ax.plot(t, v, lw=1.5)
        for key, style in (("t_gel", ":"), ("t_demold", "--")):
            mark = k[key]
            if mark is not None:
                ax.axvline(mark, color="grey", ls=style, lw=1, label=key.replace("_", " "))
        ax.set_xlabel("time since the shot, s")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        png = md_path.with_name(f"{md_path.stem}-{what}.png")
        fig.savefig(png)
        plt.close(fig)
        pngs.append(png)
    lines = [f"# Moulding simulation: {name}", "",
             f"Model {PurModel.name} {PurModel.version}, material system `{scenario.material}`, "
             f"solver {solver.backend} (rtol {solver.rtol:g}, atol {solver.atol:g}).", ""]
    if out.message:
        lines += [f"> {out.message}", ""]
    lines += ["## Key figures", "", "| figure | value | unit |", "|---|---:|---|"]
    lines += [f"| {label} | {value} | {unit} |" for label, value, unit in kpi_table(k)]
    lines += ["", "## Plots", ""]
    lines += [f"![{what}]({png.name})" for (what, _, _), png in zip(_PLOTS, pngs, strict=True)]
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in scenario.model_dump().items()]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [md_path, *pngs]
