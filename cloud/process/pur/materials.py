"""The PUR material systems: kinetics, enthalpies and recipe concentrations, each system with its sources.

The data lives in ``materials.toml`` beside this module. A system is looked up
by name; an unknown name is refused with the list of known ones. Blowing
agents (R-11, n-pentane) carry their molar mass, liquid density, heat
capacities and the solubility curve ``L_max(T)`` used by the MoDeNa 0D code.
"""

from __future__ import annotations

import math
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import Field, ValidationError

from shared.configbase import StrictModel
from shared.errors import InputError
from shared.validation import validation_report

__all__ = ["BLOWING_AGENTS", "BlowingAgent", "MaterialSystem", "UnknownMaterialError", "get_material",
           "material_names", "materials"]


class UnknownMaterialError(InputError):
    """No material system by that name; the message lists the known ones."""


class BlowingAgent(StrictModel):
    """A physical blowing agent: molar mass kg/mol, liquid density kg/m³, solubility in the polymer."""

    name: str
    molar_mass_kg_mol: float
    rho_liquid_kg_m3: float
    c_gas_j_kgk: float = 593.0
    c_liquid_j_kgk: float = 870.0
    latent_heat_j_kg: float = 2.0e5

    def l_max(self, t_k: float) -> float:
        """Solubility of the agent in the liquid polymer, kg per kg, at ``t_k`` kelvin (MoDeNa ``liquidBA.h``)."""
        if self.name == "r11":
            return 1e-7 + 4.2934 * math.exp(-((t_k - 203.3556) ** 2) / (2 * 40.016**2))
        if self.name == "n-pentane":
            dt = max(t_k - 298.0, 0.0)  # the curve is given above 298 K; flat (its maximum) below
            return 0.0064 + 0.0551 * math.exp(-(dt**2) / (2 * 17.8**2))
        return math.inf


BLOWING_AGENTS = {
    "r11": BlowingAgent(name="r11", molar_mass_kg_mol=0.13737, rho_liquid_kg_m3=1467.0),
    "n-pentane": BlowingAgent(name="n-pentane", molar_mass_kg_mol=0.07215, rho_liquid_kg_m3=751.0),
}


class MaterialSystem(StrictModel):
    """One foam system. Field names carry the unit; enthalpies are negative (exothermic)."""

    name: str = ""
    description: str
    sources: list[str] = Field(min_length=1)
    a_oh_m3_mol_s: float = Field(gt=0, description="gelling pre-exponential factor")
    e_oh_kj_mol: float = Field(gt=0, le=200)
    a_w_1_s: float = Field(gt=0, description="blowing pre-exponential factor")
    e_w_kj_mol: float = Field(gt=0, le=200)
    dh_oh_kj_mol: float = Field(lt=0, ge=-200)
    dh_w_kj_mol: float = Field(lt=0, ge=-200)
    c_oh0_mol_m3: float = Field(gt=0)
    c_nco0_mol_m3: float = Field(gt=0)
    c_w0_mol_m3: float = Field(ge=0)
    x_gel: float = Field(gt=0, lt=1, description="gel point, conversion of OH")
    blowing_agent: Literal["none", "r11", "n-pentane"]
    ba_fraction_kg_kg: float = Field(ge=0, le=0.5,
                                     description="physical blowing agent at the shot, kg per kg of polymer (L0)")
    assumptions: list[str] = []
    rho_poly_kg_m3: float = Field(default=1100.0, gt=0)
    c_poly_j_kgk: float = Field(default=1800.0, gt=0)
    c_co2_j_kgk: float = Field(default=836.6, gt=0)
    co2_solubility_mol_m3_pa: float = Field(default=1.1e-4, ge=0, description="Henry constant (Baser)")
    # Castro-Macosko viscosity (castro1982)
    visc_a_pa_s: float = 4.1e-8
    visc_e_kj_mol: float = 38.3
    visc_a: float = 4.0
    visc_b: float = -2.0
    # hardness, our empirical form: H = h_ref * (rho / rho_ref)^n_rho * cure_factor (docs/process-models.md)
    hardness_ref: float = Field(default=45.0, gt=0, le=100, description="Shore A at rho_ref, full cure")
    hardness_rho_ref_kg_m3: float = Field(default=60.0, gt=0)
    hardness_n_rho: float = Field(default=1.5, gt=0, le=3)

    @property
    def agent(self) -> BlowingAgent | None:
        return BLOWING_AGENTS.get(self.blowing_agent)

    @property
    def x_oh_ultimate(self) -> float:
        """The OH conversion at the end: isocyanate left after water takes its share, at most 1."""
        return min(1.0, (self.c_nco0_mol_m3 - 2.0 * self.c_w0_mol_m3) / self.c_oh0_mol_m3)


class _Database(StrictModel):
    sources: dict[str, str]
    system: dict[str, MaterialSystem]


@lru_cache(maxsize=1)
def materials() -> dict[str, MaterialSystem]:
    """Every material system in the database, by name."""
    text = resources.files("cloud.process.pur").joinpath("materials.toml").read_text(encoding="utf-8")
    try:
        db = _Database.model_validate(tomllib.loads(text))
    except ValidationError as exc:  # a broken data file is a bug of ours; say where
        raise RuntimeError("materials.toml: " + "; ".join(validation_report(exc, _Database, text))) from None
    for name, system in db.system.items():
        missing = [s for s in system.sources if s not in db.sources]
        if missing:
            raise RuntimeError(f"materials.toml: system {name!r} cites unknown sources {missing}")
    return {name: system.model_copy(update={"name": name}) for name, system in db.system.items()}


def source_text(key: str) -> str:
    """The full reference behind a source key."""
    text = resources.files("cloud.process.pur").joinpath("materials.toml").read_text(encoding="utf-8")
    return str(tomllib.loads(text)["sources"][key])


def material_names() -> list[str]:
    return sorted(materials())


def get_material(name: str) -> MaterialSystem:
    """The system called ``name``; an unknown name is refused with the known ones listed."""
    try:
        return materials()[name]
    except KeyError:
        raise UnknownMaterialError(
            f"unknown material system {name!r}; known systems: {', '.join(material_names())}",
            path="material") from None
