"""Length units the physics engine accepts, and conversions to SI.

Meshes are in millimetres unless stated; results are always given in SI
(m, kg, kg·m²) and, where a person reads them, also in the part's unit.
A STEP file states its own length unit; ``STEP_UNITS`` maps the names the
CAD kernel reports for it to ours.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "DEFAULT_TOLERANCE_M", "METRES_PER", "STEP_UNITS", "UNIT_WORDS", "LengthUnit", "format_length",
    "format_mass",
]

LengthUnit = Literal["mm", "m", "inch"]

# The touching tolerance (m) every check, answer and picture uses unless the request gives one.
DEFAULT_TOLERANCE_M = 1e-5

METRES_PER: dict[str, float] = {"mm": 1e-3, "m": 1.0, "inch": 0.0254}

# How people say each unit in a sentence ("the STEP file is in inches").
UNIT_WORDS: dict[str, str] = {"mm": "millimetres", "m": "metres", "inch": "inches"}

# Length unit names as OCCT reports them for a STEP file (lower-cased), for the units we have.
STEP_UNITS: dict[str, LengthUnit] = {
    "millimetre": "mm", "millimeter": "mm", "mm": "mm",
    "metre": "m", "meter": "m", "m": "m",
    "inch": "inch", "in": "inch",
}


def format_length(metres: float) -> str:
    """A length for a sentence, in the unit that reads best: '7.6 µm', '0.12 mm', '100 m'."""
    return _format(metres, (("m", 1.0), ("mm", 1e-3), ("µm", 1e-6), ("nm", 1e-9)))


def format_mass(kg: float) -> str:
    """A mass for a sentence: '981 ng', '0.636 mg', '12 kg'."""
    return _format(kg, (("kg", 1.0), ("g", 1e-3), ("mg", 1e-6), ("µg", 1e-9), ("ng", 1e-12)))


def _format(value: float, scales: tuple[tuple[str, float], ...]) -> str:
    for unit, scale in scales:
        if abs(value) >= scale or unit == scales[-1][0]:
            scaled = value / scale
            return f"{scaled:,.0f} {unit}" if abs(scaled) >= 1000 else f"{scaled:.3g} {unit}"
    raise AssertionError("unreachable")
