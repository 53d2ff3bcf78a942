"""Assembly mates: their JSON model and their residual equations.

A mate relates features of two parts (or a part and the world). Features are
given in the part's own frame and unit: a point (``origin``), a plane
(``origin`` + outward ``direction``), an axis (``origin`` + ``direction``) or a
cylinder (an axis + ``radius``). ``equations.py`` turns each mate into a few
scalar equations r(poses) = 0 with analytic Jacobians; the solver and the DOF
analysis use them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from shared.configbase import StrictModel as _Strict
from shared.errors import Problem

__all__ = ["FeatureSpec", "MateSpec", "MateType", "unknown_parts"]

Vec3 = tuple[float, float, float]
MateType = Literal[
    "coincident", "concentric", "parallel", "perpendicular", "distance", "angle", "tangent", "fixed"
]


class FeatureSpec(_Strict):
    """A geometric feature of a part, in the part's frame and unit (world frame if ``part`` is null)."""

    part: str | None = Field(default=None, description="part name; null means the fixed world frame")
    kind: Literal["point", "plane", "axis", "cylinder"]
    origin: Vec3 = Field(default=(0.0, 0.0, 0.0), description="a point of the feature, in the part's unit")
    direction: Vec3 | None = Field(default=
        None, description="plane normal (outward) or axis direction; unitless, normalised"
    )
    radius: float | None = Field(default=None, gt=0, description="cylinder radius, in the part's unit")

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if self.kind != "point":
            if self.direction is None:
                raise ValueError(f"a {self.kind} needs a direction")
            if not np.isfinite(self.direction).all() or np.linalg.norm(self.direction) < 1e-12:
                raise ValueError("direction must be a finite non-zero vector")
        if self.kind == "cylinder" and self.radius is None:
            raise ValueError("a cylinder needs a radius")
        if not np.isfinite(self.origin).all():
            raise ValueError("origin must be finite")
        return self


class MateSpec(_Strict):
    """One mate between features ``a`` and ``b``. Distances in the assembly unit, angles in degrees."""

    name: str | None = None
    type: MateType
    a: FeatureSpec
    b: FeatureSpec | None = Field(default=None, description="second feature; for 'fixed', null = the world")
    distance: float | None = Field(default=None, description="for 'distance', in the assembly's unit")
    angle_deg: float | None = Field(default=None, ge=0, le=180, description="for 'angle', degrees")
    alignment: Literal["aligned", "anti-aligned", "any"] | None = Field(default=
        None, description="direction sense; default anti-aligned for plane-plane coincident, else any"
    )

    @model_validator(mode="after")
    def _check(self) -> MateSpec:
        kinds = (self.a.kind, self.b.kind if self.b else None)
        if self.type != "fixed" and self.b is None:
            raise ValueError(f"a {self.type} mate needs two features (a and b)")
        if self.type == "distance" and (self.distance is None or not np.isfinite(self.distance)):
            raise ValueError("a distance mate needs a finite 'distance'")
        if self.type == "angle" and self.angle_deg is None:
            raise ValueError("an angle mate needs 'angle_deg'")
        allowed = _ALLOWED.get(self.type)
        if allowed is not None and frozenset(kinds) not in allowed and tuple(kinds) not in allowed:
            raise ValueError(f"a {self.type} mate cannot join a {kinds[0]} and a {kinds[1]}")
        return self


_LINE = {"plane", "axis", "cylinder"}
_ALLOWED: dict[str, set[object]] = {
    "coincident": {frozenset({"point"}), frozenset({"point", "plane"}), frozenset({"plane"}),
                   frozenset({"point", "axis"}), frozenset({"point", "cylinder"})},
    "concentric": {frozenset({"axis"}), frozenset({"cylinder"}), frozenset({"axis", "cylinder"})},
    "parallel": {frozenset({x, y}) for x in _LINE for y in _LINE},
    "perpendicular": {frozenset({x, y}) for x in _LINE for y in _LINE},
    "angle": {frozenset({x, y}) for x in _LINE for y in _LINE},
    "distance": {frozenset({"point"}), frozenset({"point", "plane"}), frozenset({"plane"})},
    "tangent": {frozenset({"plane", "cylinder"})},
}


def unknown_parts(mates: list[MateSpec], names: set[str] | dict[str, int]) -> list[Problem]:
    """A problem for every mate feature naming a part the assembly lacks, with its path (``mates[0].a.part``)."""
    problems: list[Problem] = []
    for i, mate in enumerate(mates):
        for key, feat in (("a", mate.a), ("b", mate.b)):
            if feat is not None and feat.part is not None and feat.part not in names:
                problems.append(Problem(f"mates[{i}].{key}.part", f"no part named {feat.part!r} in this assembly"))
    return problems
