"""Process scenarios for the PUR model: the settings of one moulding (mould, shot, vents, thresholds).

A scenario is the model's ``Parameters``: a pydantic model with every number
bounded, so a bad value is refused as ``key: must be ... (got value)``.
Named scenarios live in ``scenarios.toml`` beside this module (one
``[scenario.NAME]`` table each); ``load_scenarios`` reads that file or
another one and reports every problem with its path and line.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from cloud.process.pur.materials import get_material, material_names, materials
from shared.configbase import StrictModel, read_toml
from shared.errors import ConfigFileError
from shared.validation import validation_report

__all__ = ["MAX_OUTPUT_POINTS", "PurScenario", "allowed_range", "builtin_scenarios", "load_scenarios"]

MAX_OUTPUT_POINTS = 100_000  # per run: horizon_s / output_step_s (every state and output series is this long)


class PurScenario(StrictModel):
    """One moulding: the material system and the process settings. Units are in the names."""

    material: str = Field(description="material system name (see materials.toml)")
    initial_temperature_c: float = Field(default=25.0, ge=5, le=80, description="liquid mixture at the shot")
    mould_temperature_c: float = Field(default=45.0, ge=0, le=150,
                                       description="used when the run has no measured mould temperature")
    ambient_temperature_c: float = Field(default=20.0, ge=-20, le=60)
    ambient_pressure_bar: float = Field(default=1.01325, ge=0.5, le=1.2)
    mould_volume_l: float = Field(default=10.0, gt=0, le=5000)
    shot_mass_kg: float = Field(default=0.3, gt=0, le=500)
    mould_area_m2: float = Field(default=0.33, gt=0, le=500, description="inner surface of the cavity")
    heat_exchange: bool = Field(default=True, description="false: adiabatic (no foam-mould or ambient exchange)")
    h_mould_w_m2k: float = Field(default=5.0, ge=0, le=2000, description="effective core-to-mould coefficient")
    h_ambient_w_m2k: float = Field(default=2.0, ge=0, le=200, description="free foam surface to ambient")
    ba_fraction_kg_kg: float | None = Field(default=None, ge=0, le=0.5,
                                            description="blowing agent, kg per kg of polymer; default: the material's")
    vent_area_mm2: float = Field(default=2.0, ge=0, le=10_000)
    vent_efficiency: float = Field(default=1.0, ge=0, le=1, description="1 clean, 0 blocked")
    cell_gas_vent_factor: float = Field(default=0.1, ge=0, le=1,
                                        description="how readily cell gas leaves through a vent, relative to air")
    gel_effect: bool = False
    dilution: bool = False
    co2_dissolution_rate_1_s: float = Field(default=0.05, gt=0, le=10)
    evaporation_rate_1_s: float = Field(default=1.0, gt=0, le=10)
    cycle_time_s: float = Field(default=300.0, gt=0, le=7200, description="the longest acceptable cycle")
    horizon_s: float = Field(default=600.0, ge=10, le=86_400, description="how long a run is simulated")
    output_step_s: float = Field(default=1.0, ge=0.01, le=60)
    alpha_demold: float = Field(default=0.6, gt=0, le=1, description="cure (OH conversion) needed to demould")
    hardness_demold: float = Field(default=15.0, ge=0, le=100, description="Shore A needed to demould")

    @field_validator("material")
    @classmethod
    def _known_material(cls, name: str) -> str:
        if name not in materials():
            raise ValueError(f"unknown material system; known systems: {', '.join(material_names())}")
        return name

    @field_validator("shot_mass_kg")
    @classmethod
    def _shot_fits(cls, shot: float, info: ValidationInfo) -> float:
        material, volume = info.data.get("material"), info.data.get("mould_volume_l")
        if material is None or volume is None:
            return shot
        liquid_l = shot / get_material(material).rho_poly_kg_m3 * 1000.0
        if liquid_l >= 0.9 * volume:
            limit = 0.9 * volume * get_material(material).rho_poly_kg_m3 / 1000.0
            raise ValueError(f"must be less than {limit:.4g} kg, 90 % of the {volume:g} L mould as liquid")
        return shot

    @field_validator("output_step_s")
    @classmethod
    def _grid_fits(cls, step: float, info: ValidationInfo) -> float:
        horizon = info.data.get("horizon_s")
        if horizon is not None and horizon / step > MAX_OUTPUT_POINTS:
            raise ValueError(f"must be at least {horizon / MAX_OUTPUT_POINTS:.4g} s for a {horizon:g} s horizon "
                             f"(at most {MAX_OUTPUT_POINTS:,} output points a run)")
        return step

    @field_validator("alpha_demold")
    @classmethod
    def _reachable_cure(cls, alpha: float, info: ValidationInfo) -> float:
        material = info.data.get("material")
        if material is not None and alpha > get_material(material).x_oh_ultimate:
            raise ValueError(f"must be at most {get_material(material).x_oh_ultimate:.3f}, "
                             f"the cure {material} reaches")
        return alpha

    @property
    def ba_fraction(self) -> float:
        return get_material(self.material).ba_fraction_kg_kg if self.ba_fraction_kg_kg is None \
            else self.ba_fraction_kg_kg


def allowed_range(key: str) -> str:
    """``"; allowed 0..1"`` for a bounded scenario key, so a refused value comes with its range."""
    field = PurScenario.model_fields.get(key)
    if field is None:
        return ""
    lo = hi = None
    for meta in field.metadata:
        lo = getattr(meta, "ge", None) if getattr(meta, "ge", None) is not None else lo
        lo = getattr(meta, "gt", None) if getattr(meta, "gt", None) is not None else lo
        hi = getattr(meta, "le", None) if getattr(meta, "le", None) is not None else hi
        hi = getattr(meta, "lt", None) if getattr(meta, "lt", None) is not None else hi
    if lo is None and hi is None:
        return ""
    return f"; allowed {'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"


def _parse(data: Any, source: str, text: str | None) -> dict[str, PurScenario]:
    if not isinstance(data, dict) or not isinstance(data.get("scenario"), dict):
        raise ConfigFileError(source, ["expected [scenario.NAME] tables"])
    out: dict[str, PurScenario] = {}
    lines: list[str] = []
    for name, table in data["scenario"].items():
        try:
            out[name] = PurScenario.model_validate(table)
        except ValidationError as exc:
            for line in validation_report(exc, PurScenario, text):
                where, _, rest = line.partition(": ") if line.startswith("line ") else ("", "", line)
                key = rest.partition(":")[0]
                lines.append(f"{where + ': ' if where else ''}scenario.{name}.{rest}{allowed_range(key)}")
    if lines:
        raise ConfigFileError(source, lines)
    return out


def load_scenarios(path: str | Path) -> dict[str, PurScenario]:
    """Read a scenarios file; every problem is reported as ``scenario.NAME.key: ... (got value)``."""
    text, data = read_toml(path)
    return _parse(data, str(path), text)


def builtin_scenarios() -> dict[str, PurScenario]:
    """The scenarios shipped with the model (``scenarios.toml``)."""
    text = resources.files("cloud.process.pur").joinpath("scenarios.toml").read_text(encoding="utf-8")
    return _parse(tomllib.loads(text), "scenarios.toml", text)
