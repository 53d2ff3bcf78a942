"""``twincloud process run-sim`` and ``optimize`` as a user runs them: a real process, real files, real KPIs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cloud.process.model import SolverSpec
from cloud.process.pur import builtin_scenarios, simulate
from cloud.process.pur.model import outputs_of

ROOT = Path(__file__).resolve().parents[3]


def twincloud(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cloud.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_run_sim_saves_csv_json_and_a_report_whose_figures_equal_a_direct_model_run(tmp_path: Path) -> None:
    done = twincloud("process", "run-sim", "seat-cushion-cold-mould", "--out", "out", "--report", "rep/shot.md",
                     "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    direct = outputs_of(simulate(builtin_scenarios()["seat-cushion-cold-mould"], SolverSpec(backend="cvode")))
    for key in ("t_core_max", "t_gel", "t_demold", "hardness_demold", "hardness_24h", "density_moulded", "p_max",
                "margin_s"):
        assert printed["kpis"][key] == pytest.approx(direct.scalars[key], rel=1e-9), key
    saved = json.loads((tmp_path / "out" / "seat-cushion-cold-mould.json").read_text())
    assert saved["kpis"] == printed["kpis"]
    assert saved["settings"]["mould_temperature_c"] == 25.0

    with (tmp_path / "out" / "seat-cushion-cold-mould.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    t = np.array([float(r["t_s"]) for r in rows])
    np.testing.assert_allclose(t, direct.series["t_core"][0])
    np.testing.assert_allclose([float(r["t_core_c"]) for r in rows], direct.series["t_core"][1], rtol=1e-9)
    np.testing.assert_allclose([float(r["p_mould_bar"]) for r in rows], direct.series["p_mould"][1], rtol=1e-9)

    report = (tmp_path / "rep" / "shot.md").read_text()
    assert f"| demould time | {direct.scalars['t_demold']:.2f} | s |" in report
    assert f"| moulded density | {direct.scalars['density_moulded']:.2f} | kg/m3 |" in report
    for what in ("temperature", "cure", "pressure", "density"):
        png = tmp_path / "rep" / f"shot-{what}.png"
        assert f"![{what}](shot-{what}.png)" in report
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_run_sim_prints_a_kpi_table(tmp_path: Path) -> None:
    done = twincloud("process", "run-sim", "rigid-panel-r11", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    direct = outputs_of(simulate(builtin_scenarios()["rigid-panel-r11"], SolverSpec(backend="cvode")))
    table = {line[:30].strip(): line[30:].split() for line in done.stdout.splitlines()[1:] if line.startswith("  ")}
    assert table["gel time"] == [f"{direct.scalars['t_gel']:.2f}", "s"]
    assert table["demould time"] == [f"{direct.scalars['t_demold']:.2f}", "s"]
    assert table["peak mould pressure"] == [f"{direct.scalars['p_max']:.4f}", "bar"]


def test_an_unknown_scenario_or_material_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    done = twincloud("process", "run-sim", "seat-cusion", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown scenario 'seat-cusion'; known scenarios: rigid-panel-r11, seat-cushion" in done.stderr
    assert "Traceback" not in done.stderr
    bad = tmp_path / "mine.toml"
    bad.write_text('[scenario.x]\nmaterial = "polyester-x"\n')
    done = twincloud("process", "run-sim", "x", "--scenarios", str(bad), cwd=tmp_path)
    assert done.returncode == 78
    assert "scenario.x.material: unknown material system; known systems: r11-baser, wall-drainage, " \
           "water-pentane" in done.stderr


def test_optimize_shows_progress_and_the_best_cycle(tmp_path: Path) -> None:
    done = twincloud("process", "optimize", "seat-cushion", "--bound", "shot_mass_kg=0.25:0.45",
                     "--density-max", "36", "--risk-max", "1", "--max-candidates", "120", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("generation ")]
    assert len(progress) >= 2 and progress[-1].startswith(f"generation {len(progress)}: 120 candidates")
    found = json.loads(done.stdout)
    assert found["feasible"] and found["best"]["kpis"]["density_moulded"] <= 36.0


@pytest.mark.parametrize(("argv", "code", "expected"), [
    ((), 2, "bounds: the search space is empty"),
    (("--bound", "mould_temperature_c=-10:80"), 2, "bounds.mould_temperature_c: must lie within 0..150"),
    (("--bound", "shot_mass_kg=0.3"), 2, "--bound: expected KEY=LOW:HIGH"),
    (("--bound", "shot_mass_kg=0.25:0.45", "--p-max", "1.1", "--risk-max", "1", "--max-candidates", "20"), 1,
     "binding: p_max:"),
])
def test_optimize_refuses_bad_input_and_names_binding_constraints(tmp_path: Path, argv, code, expected) -> None:
    done = twincloud("process", "optimize", "seat-cushion", *argv, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
