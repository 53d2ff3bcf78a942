"""The PUR foam equations: Baser & Khakhar's 0D kinetics and heat balance, with our mould additions.

State vector (one shot; amounts in mol for the whole shot, ``L`` per kg of polymer):

====  ==========  =====================================================
 0    X_OH        conversion of polyol OH (gelling); the cure α
 1    X_W         conversion of water (blowing)
 2    T           foam core temperature, K
 3    L_l         liquid physical blowing agent, kg per kg polymer
 4    n_BA,g      blowing agent as gas in the mould, mol
 5    n_BA,v      blowing agent vented, mol (cumulative)
 6    n_CO2,d     CO2 dissolved in the polymer, mol
 7    n_CO2,g     CO2 as gas in the mould, mol
 8    n_CO2,v     CO2 vented, mol (cumulative)
 9    n_air       air in the mould, mol
10    n_air,v     air vented, mol (cumulative, net of any inflow)
====  ==========  =====================================================

Every flux that leaves one state enters another, so the conservation checks
(blowing agent, CO2) hold to the integrator's round-off. The equations and
every assumption are written out in docs/process-models.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cloud.process.pur.materials import MaterialSystem, get_material
from cloud.process.pur.scenario import PurScenario

__all__ = ["M_AIR", "M_CO2", "R_GAS", "STATE_NAMES", "PurEquations"]

R_GAS = 8.314462618  # J/(mol·K)
M_CO2 = 0.04401  # kg/mol
M_AIR = 0.028965  # kg/mol
VENT_DISCHARGE = 0.6  # orifice discharge coefficient
VENT_DP_REG_PA = 2000.0  # below this the orifice law is made linear (smooth at zero, not stiff)
STATE_NAMES = ("x_oh", "x_w", "t_k", "l_liquid", "n_ba_gas", "n_ba_vented", "n_co2_dissolved", "n_co2_gas",
               "n_co2_vented", "n_air", "n_air_vented")


def gel_effect(x: float) -> float:
    """Baser & Khakhar's piecewise gel-effect factor on the gelling rate."""
    if x < 0.5:
        return 1.0
    if x < 0.87:
        return -2.027 * x + 2.013
    return 3.461 * x - 2.761


@dataclass(frozen=True)
class Derived:
    """Quantities that follow from a state: pressure, volumes, fill and density."""

    p_pa: float
    v_gas_m3: float
    v_foam_m3: float
    fill: float
    rho_foam_kg_m3: float


class PurEquations:
    """The right-hand side for one material system and scenario, driven by a mould temperature T_m(t) in K."""

    def __init__(self, scenario: PurScenario, mould_temperature_k: Callable[[float], float]) -> None:
        self.s = scenario
        self.m: MaterialSystem = get_material(scenario.material)
        self.t_mould = mould_temperature_k
        m, s = self.m, scenario
        agent = m.agent
        self.l0 = s.ba_fraction if agent is not None else 0.0
        self.m_poly = s.shot_mass_kg / (1.0 + self.l0)  # L is per kg of polymer (Baser)
        self.v_poly = self.m_poly / m.rho_poly_kg_m3
        self.v_mould = s.mould_volume_l / 1000.0
        self.t0 = s.initial_temperature_c + 273.15
        self.t_amb = s.ambient_temperature_c + 273.15
        self.p_amb = s.ambient_pressure_bar * 1e5
        self.m_ba = agent.molar_mass_kg_mol if agent else 1.0
        self.rho_ba = agent.rho_liquid_kg_m3 if agent else 1000.0
        self.c_bag = agent.c_gas_j_kgk if agent else 0.0
        self.c_bal = agent.c_liquid_j_kgk if agent else 0.0
        self.lam = agent.latent_heat_j_kg if agent else 0.0
        self.l_max = agent.l_max if agent else (lambda _t: math.inf)
        self.vent_area = s.vent_area_mm2 * 1e-6 * s.vent_efficiency * VENT_DISCHARGE
        self.h_m = s.h_mould_w_m2k * s.mould_area_m2 if s.heat_exchange else 0.0
        self.h_a = s.h_ambient_w_m2k * s.mould_area_m2 if s.heat_exchange else 0.0

    @property
    def cell_eps(self) -> float:
        """Cell gas (mol) below which CO2 is taken as not yet nucleated: 0.1 % of the mould's air at the shot."""
        return 1e-3 * self.p_amb * self.v_mould / (R_GAS * self.t0)

    def y0(self) -> np.ndarray:
        """The state at the shot: nothing converted, the mould full of air at ambient pressure, at T0."""
        v_gas = self.v_mould - self.v_poly - self.m_poly * self.l0 / self.rho_ba
        n_air = self.p_amb * v_gas / (R_GAS * self.t0)
        return np.array([0.0, 0.0, self.t0, self.l0, 0.0, 0.0, 0.0, 0.0, 0.0, n_air, 0.0])

    def derived(self, y: np.ndarray) -> Derived:
        _, _, t, l_l, n_bag, _, n_cd, n_cg, _, n_air, _ = (float(v) for v in y)
        v_liq = self.v_poly + self.m_poly * l_l / self.rho_ba
        v_gas = self.v_mould - v_liq
        n_cell = n_cg + n_bag
        n_tot = n_cell + n_air
        p = n_tot * R_GAS * t / v_gas
        v_foam = v_liq + (v_gas * n_cell / n_tot if n_tot > 0 else 0.0)
        mass = self.m_poly * (1.0 + l_l) + (n_cd + n_cg) * M_CO2 + n_bag * self.m_ba
        return Derived(p, v_gas, v_foam, v_foam / self.v_mould, mass / v_foam)

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:  # noqa: PLR0914 - one equation per state
        m, s = self.m, self.s
        x_oh, x_w, temp, l_l, n_bag, _, n_cd, n_cg, _, n_air, _ = (float(v) for v in y)
        rt = R_GAS * temp
        dil = 1.0 / (1.0 + l_l * m.rho_poly_kg_m3 / self.rho_ba) if s.dilution else 1.0
        # kinetics (Baser & Khakhar): first-order blowing, second-order gelling sharing the isocyanate
        k_w = m.a_w_1_s * math.exp(-m.e_w_kj_mol * 1e3 / rt)
        k_oh = m.a_oh_m3_mol_s * math.exp(-m.e_oh_kj_mol * 1e3 / rt)
        dx_w = k_w * max(1.0 - x_w, 0.0) * dil
        nco_left = m.c_nco0_mol_m3 / m.c_oh0_mol_m3 - 2.0 * x_w * m.c_w0_mol_m3 / m.c_oh0_mol_m3 - x_oh
        dx_oh = k_oh * m.c_oh0_mol_m3 * max(1.0 - x_oh, 0.0) * max(nco_left, 0.0) * dil
        if s.gel_effect:
            dx_oh *= gel_effect(x_oh)
        # blowing agent: evaporates towards its solubility (no recondensation)
        evap = s.evaporation_rate_1_s * max(l_l - self.l_max(temp), 0.0) if self.l0 > 0 else 0.0
        n_evap = self.m_poly * evap / self.m_ba
        n_gen = self.v_poly * m.c_w0_mol_m3 * dx_w  # one CO2 per water
        # the mould's gas: one pressure for cells and head space (ideal gas at the core temperature)
        v_liq = self.v_poly + self.m_poly * l_l / self.rho_ba
        v_gas = self.v_mould - v_liq
        n_cell = n_cg + n_bag
        n_tot = n_cell + n_air
        p = n_tot * rt / v_gas
        # partial pressure of CO2 in the cells; the small ``cell_eps`` keeps it continuous as the first gas forms
        p_co2 = p * n_cg / (n_cell + self.cell_eps)
        dissolve = s.co2_dissolution_rate_1_s * (m.co2_solubility_mol_m3_pa * p_co2 * self.v_poly - n_cd)
        v_air, v_co2, v_ba = self._vents(p, temp, n_air, n_cg, n_bag)
        # heat: reactions, Kirchhoff-consistent sensible terms, latent heat, mould and ambient exchange
        fill = (v_liq + v_gas * n_cell / n_tot) / self.v_mould if n_tot > 0 else 0.0
        q_rxn = (-m.dh_oh_kj_mol * 1e3 * m.c_oh0_mol_m3 * dx_oh - m.dh_w_kj_mol * 1e3 * m.c_w0_mol_m3 * dx_w) \
            / m.rho_poly_kg_m3
        q_loss = (self.h_m * fill * (temp - self.t_mould(t)) + self.h_a * (1.0 - fill) * (temp - self.t_amb)) \
            / self.m_poly
        c_tot = (m.c_poly_j_kgk + m.c_co2_j_kgk * (n_cg + n_cd) * M_CO2 / self.m_poly
                 + self.c_bag * n_bag * self.m_ba / self.m_poly + self.c_bal * l_l)
        sensible = (temp - self.t0) * (m.c_co2_j_kgk * M_CO2 * n_gen / self.m_poly + (self.c_bag - self.c_bal) * evap)
        dtemp = (q_rxn - q_loss - sensible - self.lam * evap) / c_tot
        return np.array([dx_oh, dx_w, dtemp, -evap, n_evap - v_ba, v_ba, dissolve, n_gen - dissolve - v_co2,
                         v_co2, -v_air, v_air])

    def _vents(self, p: float, temp: float, n_air: float, n_cg: float, n_bag: float) -> tuple[float, float, float]:
        """Molar flows out through the vents (air, CO2, agent); air comes in when the mould is below ambient."""
        dp = p - self.p_amb
        if self.vent_area == 0.0 or dp == 0.0:
            return 0.0, 0.0, 0.0
        shape = dp / math.sqrt(abs(dp) + VENT_DP_REG_PA)
        if dp < 0:  # ambient air drawn in
            flow = self.vent_area * math.sqrt(2.0 * self.p_amb / (M_AIR * R_GAS * self.t_amb)) * shape
            return flow, 0.0, 0.0
        f = self.s.cell_gas_vent_factor  # air ahead of the foam leaves first; cell gas through the skin
        w_air, w_co2, w_ba = n_air, f * n_cg, f * n_bag
        w = w_air + w_co2 + w_ba
        if w <= 0.0:
            return 0.0, 0.0, 0.0
        m_mix = (w_air * M_AIR + w_co2 * M_CO2 + w_ba * self.m_ba) / w
        flow = self.vent_area * math.sqrt(2.0 * p / (m_mix * R_GAS * temp)) * shape
        return flow * w_air / w, flow * w_co2 / w, flow * w_ba / w

    def viscosity(self, x_oh: float, temp: float) -> float:
        """Castro-Macosko viscosity, Pa·s; defined below the gel point only (NaN at and above it)."""
        m = self.m
        if x_oh >= m.x_gel:
            return math.nan
        return m.visc_a_pa_s * math.exp(m.visc_e_kj_mol * 1e3 / (R_GAS * temp)) * \
            (m.x_gel / (m.x_gel - x_oh)) ** (m.visc_a + m.visc_b * x_oh)

    def hardness(self, x_oh: float, rho: float) -> float:
        """Our empirical hardness, Shore A: density power law times a cure factor from the gel point to the end."""
        m = self.m
        cure = min(max((x_oh - m.x_gel) / (m.x_oh_ultimate - m.x_gel), 0.0), 1.0)
        return min(100.0, m.hardness_ref * (rho / m.hardness_rho_ref_kg_m3) ** m.hardness_n_rho * cure)
