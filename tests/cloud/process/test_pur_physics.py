"""The PUR model against physics it must obey: enthalpy balance, conservation, the ideal-gas law, bounded cure.

The reference values are written out here from the published equations and
the material data (closed forms), not taken from the model's own output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from cloud.process.model import RunInputs, SolverSpec
from cloud.process.pur import PurModel, PurScenario, builtin_scenarios, get_material, material_names, simulate
from cloud.process.pur.equations import R_GAS, STATE_NAMES
from cloud.process.pur.model import outputs_of

IDX = {name: i for i, name in enumerate(STATE_NAMES)}
M_CO2 = 0.04401


def _l_max(agent: str, t_k: float) -> float:
    """Blowing-agent solubility, kg/kg, as published (MoDeNa liquidBA.h)."""
    if agent == "r11":
        return 1e-7 + 4.2934 * math.exp(-((t_k - 203.3556) ** 2) / (2 * 40.016**2))
    if agent == "n-pentane":
        return 0.0064 + 0.0551 * math.exp(-(max(t_k - 298.0, 0.0) ** 2) / (2 * 17.8**2))
    return math.inf


AGENT = {"r11": (0.13737, 593.0, 870.0, 2e5), "n-pentane": (0.07215, 593.0, 870.0, 2e5)}


def _adiabatic_final_temperature(material: str, t0: float) -> float:
    """The enthalpy balance at full conversion: C_tot(T_f) (T_f - T0) = Q_reactions - λ·(evaporated agent)."""
    m = get_material(material)
    x_w = 1.0 if m.c_w0_mol_m3 > 0 else 0.0
    x_oh = min(1.0, (m.c_nco0_mol_m3 - 2 * m.c_w0_mol_m3 * x_w) / m.c_oh0_mol_m3)
    q = (-m.dh_oh_kj_mol * 1e3 * m.c_oh0_mol_m3 * x_oh - m.dh_w_kj_mol * 1e3 * m.c_w0_mol_m3 * x_w) / m.rho_poly_kg_m3
    w_co2 = m.c_w0_mol_m3 * x_w * M_CO2 / m.rho_poly_kg_m3
    l0 = m.ba_fraction_kg_kg
    _, c_g, c_l, lam = AGENT.get(m.blowing_agent, (1.0, 0.0, 0.0, 0.0))

    def balance(t_f: float) -> float:
        l_f = min(l0, _l_max(m.blowing_agent, t_f))
        c_tot = m.c_poly_j_kgk + m.c_co2_j_kgk * w_co2 + c_g * (l0 - l_f) + c_l * l_f
        return c_tot * (t_f - t0) - (q - lam * (l0 - l_f))

    return float(brentq(balance, t0, t0 + 400.0))


def _closed_adiabatic(material: str, **extra: object) -> PurScenario:
    return PurScenario(material=material, heat_exchange=False, vent_efficiency=0.0, horizon_s=36_000.0,
                       output_step_s=60.0, alpha_demold=0.5, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("material", material_names())
def test_adiabatic_temperature_rise_equals_the_reaction_enthalpy_balance(material: str) -> None:
    scenario = _closed_adiabatic(material)
    traj = simulate(scenario, SolverSpec(backend="lsoda", rtol=1e-9, atol=1e-12))
    assert traj.ok, traj.message
    expected = _adiabatic_final_temperature(material, scenario.initial_temperature_c + 273.15)
    assert abs(traj.y[-1, IDX["t_k"]] - expected) < 0.5
    assert expected - scenario.initial_temperature_c - 273.15 > 50.0  # the exotherm is real, not a trivial pass


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
@pytest.mark.parametrize("backend", ["lsoda", "rk4"])
def test_blowing_agent_and_co2_are_conserved(name: str, backend: str) -> None:
    scenario = builtin_scenarios()[name]
    traj = simulate(scenario, SolverSpec(backend=backend))
    assert traj.ok, traj.message
    m = get_material(scenario.material)
    y = traj.y
    m_poly = scenario.shot_mass_kg / (1.0 + scenario.ba_fraction) if m.agent else scenario.shot_mass_kg
    if m.agent:
        molar = m.agent.molar_mass_kg_mol
        initial = m_poly * scenario.ba_fraction / molar
        total = m_poly * y[:, IDX["l_liquid"]] / molar + y[:, IDX["n_ba_gas"]] + y[:, IDX["n_ba_vented"]]
        assert np.max(np.abs(total - initial)) <= 1e-6 * initial
        assert y[-1, IDX["n_ba_gas"]] > 0.1 * initial  # the agent did boil: the check is not vacuous
    generated = m_poly / m.rho_poly_kg_m3 * m.c_w0_mol_m3 * y[:, IDX["x_w"]]
    accounted = y[:, IDX["n_co2_dissolved"]] + y[:, IDX["n_co2_gas"]] + y[:, IDX["n_co2_vented"]]
    if m.c_w0_mol_m3 > 0:
        assert np.max(np.abs(accounted - generated)) <= 1e-6 * generated[-1]
        assert y[-1, IDX["n_co2_vented"]] > 0 and y[-1, IDX["n_co2_dissolved"]] > 0
    else:
        assert np.max(np.abs(accounted)) < 1e-15


@pytest.mark.parametrize("material", material_names())
def test_with_vents_closed_the_mould_pressure_follows_the_ideal_gas_law(material: str) -> None:
    scenario = PurScenario(material=material, vent_efficiency=0.0, horizon_s=600.0)
    traj = simulate(scenario, SolverSpec(backend="lsoda", rtol=1e-8, atol=1e-12))
    assert traj.ok, traj.message
    out = outputs_of(traj)
    m = get_material(material)
    y = traj.y
    l0 = scenario.ba_fraction if m.agent else 0.0
    m_poly = scenario.shot_mass_kg / (1.0 + l0)
    rho_ba = m.agent.rho_liquid_kg_m3 if m.agent else 1.0
    v_gas = scenario.mould_volume_l / 1000 - m_poly / m.rho_poly_kg_m3 - m_poly * y[:, IDX["l_liquid"]] / rho_ba
    # the gas inventory from the stoichiometry, not from the model's gas states: the air the ambient pressure put
    # in the mould at the shot, one CO2 per water reacted less what dissolved, the agent that left the liquid
    n_air0 = scenario.ambient_pressure_bar * 1e5 * v_gas[0] / (R_GAS * (scenario.initial_temperature_c + 273.15))
    n_co2 = m_poly / m.rho_poly_kg_m3 * m.c_w0_mol_m3 * y[:, IDX["x_w"]] - y[:, IDX["n_co2_dissolved"]]
    n_agent = m_poly * (l0 - y[:, IDX["l_liquid"]]) / m.agent.molar_mass_kg_mol if m.agent else 0.0
    expected_bar = (n_air0 + n_co2 + n_agent) * R_GAS * y[:, IDX["t_k"]] / v_gas / 1e5
    _, p_bar = out.series["p_mould"]
    assert np.max(np.abs(p_bar - expected_bar) / expected_bar) < 1e-6
    # the air stays in a closed mould, at the amount the ambient pressure put there at the shot
    assert np.max(np.abs(y[:, IDX["n_air"]] - n_air0)) < 1e-12 * n_air0 + 1e-15
    assert p_bar.max() > 1.3 * scenario.ambient_pressure_bar  # the gas really built pressure


def test_a_blocked_vent_raises_the_mould_pressure() -> None:
    scenarios = builtin_scenarios()
    clean = outputs_of(simulate(scenarios["seat-cushion"], SolverSpec()))
    blocked = outputs_of(simulate(scenarios["seat-cushion-blocked-vent"], SolverSpec()))
    assert blocked.scalars["p_max"] > clean.scalars["p_max"] + 0.3
    assert blocked.scalars["density_moulded"] > clean.scalars["density_moulded"]


def test_a_cold_mould_delays_gel_and_demould() -> None:
    scenarios = builtin_scenarios()
    warm = outputs_of(simulate(scenarios["seat-cushion"], SolverSpec()))
    cold = outputs_of(simulate(scenarios["seat-cushion-cold-mould"], SolverSpec()))
    assert cold.scalars["t_gel"] > warm.scalars["t_gel"]
    assert cold.scalars["t_demold"] > warm.scalars["t_demold"]
    assert cold.scalars["t_core_max"] < warm.scalars["t_core_max"]


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_every_scenario_gives_finite_outputs_and_a_monotonic_bounded_cure(name: str) -> None:
    scenario = builtin_scenarios()[name]
    out = PurModel().run(RunInputs(start=0.0, series={}), scenario, SolverSpec())
    assert out.ok, out.message
    assert out.message == ""
    _, alpha = out.series["alpha"]
    for key, (t, v) in out.series.items():
        assert t.size == v.size and t.size > 0, key
        if key == "viscosity":  # Castro-Macosko: finite below the gel point, infinite from it
            gelled = alpha >= get_material(scenario.material).x_gel
            assert np.all(np.isfinite(v[~gelled])) and np.all(v[gelled] == np.inf)
            assert v[~gelled][-1] > 100 * v[0]  # it diverges towards the gel point
        else:
            assert np.all(np.isfinite(v)), key
    for key, value in out.scalars.items():
        assert math.isfinite(value), key
    assert np.all(np.diff(alpha) >= -1e-12)
    assert alpha.max() <= min(1.0, get_material(scenario.material).x_oh_ultimate) + 1e-9
    assert alpha[-1] > get_material(scenario.material).x_gel
    assert set(out.series) | set(out.scalars) == set(PurModel.outputs)
    assert out.scalars["margin_s"] == pytest.approx(scenario.cycle_time_s - out.scalars["t_demold"])
