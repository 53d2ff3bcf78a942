"""Length units the physics engine accepts, and conversions to SI.

Meshes are in millimetres unless stated; results are always given in SI
(m, kg, kg·m²) and, where a person reads them, also in the part's unit.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["METRES_PER", "LengthUnit", "from_metres", "to_metres", "transform_to_metres"]

LengthUnit = Literal["mm", "m", "inch"]

METRES_PER: dict[str, float] = {"mm": 1e-3, "m": 1.0, "inch": 0.0254}


def to_metres(value: float | np.ndarray, unit: LengthUnit) -> float | np.ndarray:
    """A length (or array of lengths) in ``unit`` expressed in metres."""
    return value * METRES_PER[unit]


def from_metres(value: float | np.ndarray, unit: LengthUnit) -> float | np.ndarray:
    """A length (or array of lengths) in metres expressed in ``unit``."""
    return value / METRES_PER[unit]


def transform_to_metres(matrix: np.ndarray, unit: LengthUnit) -> np.ndarray:
    """A 4×4 homogeneous transform whose translation is in ``unit``, with translation in metres."""
    out = np.array(matrix, dtype=float, copy=True)
    out[:3, 3] *= METRES_PER[unit]
    return out
