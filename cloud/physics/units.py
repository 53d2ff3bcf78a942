"""Length units the physics engine accepts, and conversions to SI.

Meshes are in millimetres unless stated; results are always given in SI
(m, kg, kg·m²) and, where a person reads them, also in the part's unit.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["METRES_PER", "LengthUnit"]

LengthUnit = Literal["mm", "m", "inch"]

METRES_PER: dict[str, float] = {"mm": 1e-3, "m": 1.0, "inch": 0.0254}

