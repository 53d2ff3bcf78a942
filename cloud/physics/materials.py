"""The materials table: density, elasticity, strength and thermal data, every value with its source.

The data lives in ``materials.json`` next to this module; values are stored
in engineering units (GPa, MPa, 1e-6/K) with the unit in the key name and are
offered here in SI as well. Each value names the reference it comes from.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from cloud.physics.errors import AssemblyError
from shared.configbase import StrictModel as _Strict

__all__ = ["Material", "MaterialTable", "SourcedValue", "get_material", "material_table"]


def _from_pair(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return {"value": value[0], "source": value[1], "note": value[2] if len(value) > 2 else ""}
    return value


class _Sourced(_Strict):
    value: float | None = Field(description="the value in the unit named by the field, or null")
    source: str = Field(description="key into the table's `sources`")
    note: str = ""


SourcedValue = Annotated[_Sourced, BeforeValidator(_from_pair)]


class Material(_Strict):
    """One engineering material at 20 °C. Field names carry the unit."""

    id: str = ""
    name: str
    category: str
    density_kg_m3: SourcedValue
    youngs_modulus_gpa: SourcedValue
    poissons_ratio: SourcedValue
    yield_strength_mpa: SourcedValue
    thermal_conductivity_w_mk: SourcedValue
    specific_heat_j_kgk: SourcedValue
    expansion_1e6_k: SourcedValue

    @property
    def density(self) -> float:
        """Density in kg/m³."""
        assert self.density_kg_m3.value is not None
        return self.density_kg_m3.value

    def si(self) -> dict[str, float | None]:
        """Every property in plain SI units (Pa, W/(m·K), J/(kg·K), 1/K)."""

        def scaled(v: _Sourced, factor: float) -> float | None:
            return None if v.value is None else v.value * factor

        return {
            "density_kg_m3": self.density,
            "youngs_modulus_pa": scaled(self.youngs_modulus_gpa, 1e9),
            "poissons_ratio": self.poissons_ratio.value,
            "yield_strength_pa": scaled(self.yield_strength_mpa, 1e6),
            "thermal_conductivity_w_mk": self.thermal_conductivity_w_mk.value,
            "specific_heat_j_kgk": self.specific_heat_j_kgk.value,
            "expansion_per_k": scaled(self.expansion_1e6_k, 1e-6),
        }


class MaterialTable(_Strict):
    """All materials and the references their values come from."""

    about: str
    sources: dict[str, str]
    materials: dict[str, Material]

    def get(self, material_id: str) -> Material:
        try:
            return self.materials[material_id]
        except KeyError:
            close = difflib.get_close_matches(material_id, list(self.materials), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise AssemblyError(f"unknown material {material_id!r}{hint}") from None


@lru_cache(maxsize=1)
def material_table() -> MaterialTable:
    """The built-in table (parsed once)."""
    text = resources.files("cloud.physics").joinpath("materials.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    for key, entry in raw["materials"].items():
        entry["id"] = key
    table = MaterialTable.model_validate(raw)
    for material in table.materials.values():
        for field in Material.model_fields:
            value = getattr(material, field)
            if isinstance(value, _Sourced) and value.source not in table.sources:
                raise ValueError(f"materials.json: {material.id}.{field} cites unknown source")
    return table


def get_material(material_id: str) -> Material:
    """A material by id (e.g. ``"aluminium-6061-t6"``); AssemblyError names close matches."""
    return material_table().get(material_id)
