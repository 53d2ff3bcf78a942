"""Bad input to the PUR model: unknown material, out-of-range settings, NaN or missing telemetry, a failed solve."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cloud.process.model import RunInputs, SolverSpec
from cloud.process.ode import BackendNotSupportedError
from cloud.process.pur import (
    PurModel,
    PurScenario,
    UnknownMaterialError,
    builtin_scenarios,
    get_material,
    load_scenarios,
    material_names,
)
from cloud.process.pur.materials import source_text
from shared.errors import ConfigFileError


def test_the_database_holds_the_three_published_sets_with_their_sources() -> None:
    assert {"r11-baser", "wall-drainage", "water-pentane"} <= set(material_names())
    # values as tabulated from the MoDeNa files (A_OH, E_OH, A_W, E_W, C_OH0, C_NCO0, C_W0)
    published = {
        "r11-baser": (1965, 54.87, 1385, 32.66, 3765, 3765, 0),
        "wall-drainage": (1.7348, 40.4, 1385, 32.66, 3400, 4000, 300),
        "water-pentane": (1, 35.14, 1050, 27.04, 4191.7, 4455, 671),
    }
    for name, values in published.items():
        m = get_material(name)
        assert (m.a_oh_m3_mol_s, m.e_oh_kj_mol, m.a_w_1_s, m.e_w_kj_mol, m.c_oh0_mol_m3, m.c_nco0_mol_m3,
                m.c_w0_mol_m3) == values
        assert m.sources and all(source_text(key) for key in m.sources)
    assert get_material("water-pentane").x_gel == 0.606


def test_an_unknown_material_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(UnknownMaterialError) as info:
        get_material("polyester-x")
    message = str(info.value)
    assert "'polyester-x'" in message and all(name in message for name in material_names())
    with pytest.raises(ValidationError, match="known systems: r11-baser, wall-drainage, water-pentane"):
        PurScenario(material="polyester-x")


def test_a_scenario_file_names_the_key_the_value_and_the_range(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text('[scenario.a]\nmaterial = "water-pentane"\nvent_efficiency = 1.5\nshot_mas_kg = 3\n\n'
                    '[scenario.b]\nmaterial = "water-pentane"\nalpha_demold = 0.9\nshot_mass_kg = 12.0\n',
                    encoding="utf-8")
    with pytest.raises(ConfigFileError) as info:
        load_scenarios(path)
    lines = info.value.lines
    assert "line 3: scenario.a.vent_efficiency: Input should be less than or equal to 1 (got 1.5); allowed 0..1" \
        in lines
    assert "line 4: scenario.a.shot_mas_kg: unknown key; did you mean 'shot_mass_kg'?" in lines
    assert any(line.startswith("line 8: scenario.b.alpha_demold: must be at most 0.743") and "(got 0.9)" in line
               for line in lines)
    assert any("scenario.b.shot_mass_kg: must be less than 9.9 kg" in line and "(got 12.0)" in line
               for line in lines)


def test_the_shipped_scenarios_load() -> None:
    assert len(builtin_scenarios()) >= 5
    assert {s.material for s in builtin_scenarios().values()} == set(material_names())


def _run(series: dict[str, tuple[np.ndarray, np.ndarray]], solver: SolverSpec | None = None,
         scenario: str = "seat-cushion"):
    return PurModel().run(RunInputs(start=1.7e9, series=series), builtin_scenarios()[scenario],
                          solver or SolverSpec())


def test_nan_in_the_mould_temperature_flags_the_run() -> None:
    out = _run({"mould_temperature": (np.array([0.0, 10.0, 20.0]), np.array([45.0, math.nan, 45.0]))})
    assert not out.ok
    assert out.message == "mould_temperature: a reading is not a number (got nan at t = 10.0 s)"
    assert out.series == {} and out.scalars == {}


def test_a_mould_temperature_out_of_range_flags_the_run() -> None:
    out = _run({"mould_temperature": (np.array([0.0, 5.0]), np.array([45.0, 900.0]))})
    assert not out.ok
    assert out.message == "mould_temperature: must be -20..250 degC (got 900 at t = 5.0 s)"


def test_no_mould_temperature_reading_yet_flags_the_run() -> None:
    out = _run({"mould_temperature": (np.array([]), np.array([]))})
    assert not out.ok and "no reading" in out.message


def test_the_measured_mould_temperature_drives_the_shot() -> None:
    flat_cold = _run({"mould_temperature": (np.array([0.0, 600.0]), np.array([25.0, 25.0]))})
    setpoint_cold = _run({}, scenario="seat-cushion-cold-mould")
    warm = _run({"mould_temperature": (np.array([0.0]), np.array([45.0]))})
    assert flat_cold.ok and warm.ok
    assert flat_cold.scalars["t_gel"] > warm.scalars["t_gel"]
    # a cold reading against the same scenario as a cold setpoint with a stiffer contact: both slower than warm
    assert setpoint_cold.scalars["t_demold"] > warm.scalars["t_demold"]
    # a reading that falls mid-shot lands between the two constant moulds
    falling = _run({"mould_temperature": (np.array([0.0, 60.0, 600.0]), np.array([45.0, 25.0, 25.0]))})
    assert warm.scalars["t_gel"] < falling.scalars["t_gel"] < flat_cold.scalars["t_gel"]


def test_a_solver_failure_is_flagged_on_the_run() -> None:
    out = _run({}, SolverSpec(backend="rk4", max_step_s=1e-3))  # 600,000 steps: more than a solve may take
    assert not out.ok
    assert out.message.startswith("the solve failed (rk4): rk4 would take 600000 steps")
    assert out.series == {}


def test_an_inaccurate_fixed_step_is_refused_not_answered() -> None:
    out = _run({}, SolverSpec(backend="rk4", max_step_s=30.0))
    assert not out.ok
    assert out.message.startswith("solver.max_step_s: must be at most 1 s for rk4 on this model (got 30)")


def test_the_jax_backend_is_not_supported_and_says_how_to_get_it() -> None:
    with pytest.raises(BackendNotSupportedError, match="install the jax extra"):
        _run({}, SolverSpec(backend="jax"))


def test_the_registry_names_the_pur_model_and_its_parameters_validate() -> None:
    from cloud.process.registry import ModelRegistry

    model = ModelRegistry().get("pur-foam")
    assert model.inputs == {"mould_temperature": "degC"}
    params = model.Parameters.model_validate({"material": "water-pentane", "mould_temperature_c": 50.0})
    out = model.run(RunInputs(start=0.0, series={"mould_temperature": (np.array([0.0]), np.array([50.0]))}),
                    params, SolverSpec(backend="cvode"))
    assert out.ok, out.message
    assert 0 < out.scalars["t_gel"] < out.scalars["t_demold"] < params.horizon_s  # type: ignore[attr-defined]


def test_an_output_grid_too_fine_for_the_horizon_is_refused_with_the_smallest_step() -> None:
    # a day at 0.01 s would be 8.6 million points of every state, and a derived series as long, at every reading
    with pytest.raises(ValidationError) as info:
        PurScenario(material="water-pentane", horizon_s=86_400.0, output_step_s=0.01)
    (error,) = info.value.errors()
    assert error["loc"] == ("output_step_s",)
    assert "at least 0.864 s" in error["msg"] and "100,000" in error["msg"]
    assert PurScenario(material="water-pentane", horizon_s=86_400.0, output_step_s=0.864).output_step_s == 0.864
