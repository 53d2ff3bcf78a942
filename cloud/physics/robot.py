"""Robot checks: payload against the robot's rated payload diagram, and friction-grip force.

Payload: the mass, the centre of gravity offset from the tool flange, the
static moments about the wrist and the moments of inertia about the flange
axes are compared with the robot maker's limits; the allowed mass at a given
CoG offset comes from the published payload-vs-offset curve (linear
interpolation, nothing allowed beyond the last point).

Gripper: a friction grip holds the part by friction alone, so the total
normal force must be F = m·(g + a)·S / (μ·n) per finger, with n fingers,
friction coefficient μ, the worst-case acceleration a and a safety factor S.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, field_validator

from cloud.physics.mass import MassProperties
from shared.configbase import StrictModel as _Strict

__all__ = ["GripResult", "GripSpec", "PayloadResult", "RobotSpec", "check_grip", "check_payload"]

G = 9.80665  # standard gravity, m/s²


class PayloadPoint(_Strict):
    offset_m: float = Field(ge=0, description="CoG distance from the flange centre, m")
    max_mass_kg: float = Field(ge=0, description="rated payload at that offset, kg")


class RobotSpec(_Strict):
    """A robot's payload data, as published in its data sheet."""

    name: str = "robot"
    rated_payload_kg: float = Field(gt=0, description="rated payload at zero offset, kg")
    payload_curve: list[PayloadPoint] = Field(
        default_factory=list, description="payload vs CoG offset from the flange; offsets ascending"
    )
    max_wrist_moment_nm: float | None = Field(default=None, gt=0, description="allowed static moment on J4/J5, N·m")
    max_flange_moment_nm: float | None = Field(default=None, gt=0, description="allowed static moment on J6, N·m")
    max_wrist_inertia_kgm2: float | None = Field(
        default=None, gt=0, description="allowed inertia about J4/J5 axes, kg·m²")
    max_flange_inertia_kgm2: float | None = Field(
        default=None, gt=0, description="allowed inertia about J6 axis, kg·m²")

    @field_validator("payload_curve")
    @classmethod
    def _ascending(cls, curve: list[PayloadPoint]) -> list[PayloadPoint]:
        offsets = [p.offset_m for p in curve]
        if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
            raise ValueError("payload_curve offsets must be strictly ascending")
        return curve

    def allowed_mass(self, offset_m: float) -> float:
        """Rated payload at a CoG offset (kg); 0 beyond the published curve."""
        if not self.payload_curve:
            return self.rated_payload_kg
        xs = [p.offset_m for p in self.payload_curve]
        ys = [p.max_mass_kg for p in self.payload_curve]
        if offset_m > xs[-1]:
            return 0.0
        return float(np.interp(offset_m, xs, ys, left=min(ys[0], self.rated_payload_kg)))


class GripSpec(_Strict):
    """A friction grip."""

    friction_coefficient: float = Field(gt=0, le=2, description="static friction μ between finger and part")
    fingers: int = Field(default=2, ge=1, le=12, description="number of fingers pressing on the part")
    acceleration_m_s2: float = Field(default=0.0, ge=0, description="worst-case acceleration of the part, m/s²")
    safety_factor: float = Field(default=2.0, ge=1, description="multiplier on the required force")
    rated_force_n: float | None = Field(default=None, gt=0, description="gripper's grip force per finger, N")


@dataclass(frozen=True)
class Usage:
    name: str
    value: float
    limit: float | None
    unit: str

    @property
    def percent(self) -> float | None:
        if self.limit is None:
            return None
        return float("inf") if self.limit == 0 else 100.0 * self.value / self.limit


@dataclass(frozen=True)
class PayloadResult:
    mass_kg: float
    cog_flange_m: np.ndarray
    offset_m: float
    axial_offset_m: float
    radial_offset_m: float
    inertia_flange_kgm2: np.ndarray
    usages: list[Usage]

    @property
    def ok(self) -> bool:
        return all(u.percent is None or u.percent <= 100.0 for u in self.usages)


@dataclass(frozen=True)
class GripResult:
    required_force_per_finger_n: float
    total_normal_force_n: float
    weight_n: float
    usage: Usage | None

    @property
    def ok(self) -> bool:
        return self.usage is None or (self.usage.percent or 0.0) <= 100.0


def check_payload(props: MassProperties, flange: np.ndarray, robot: RobotSpec) -> PayloadResult:
    """Payload ``props`` (world frame, SI) carried by a flange at pose ``flange`` (4×4, metres)."""
    rot, origin = flange[:3, :3], flange[:3, 3]
    cog = rot.T @ (props.com_m - origin)
    offset = float(np.linalg.norm(cog))
    radial = float(np.hypot(cog[0], cog[1]))
    inertia = props.inertia_about(flange)
    weight = props.mass_kg * G
    usages = [Usage("payload mass at this CoG offset", props.mass_kg, robot.allowed_mass(offset), "kg")]
    if robot.max_wrist_moment_nm:
        usages.append(Usage("static moment on the wrist (J4/J5)", weight * offset,
                            robot.max_wrist_moment_nm, "N·m"))
    if robot.max_flange_moment_nm:
        usages.append(Usage("static moment on the flange axis (J6)", weight * radial,
                            robot.max_flange_moment_nm, "N·m"))
    if robot.max_wrist_inertia_kgm2:
        usages.append(Usage("inertia about the wrist axes (J4/J5)",
                            float(max(inertia[0, 0], inertia[1, 1])), robot.max_wrist_inertia_kgm2, "kg·m²"))
    if robot.max_flange_inertia_kgm2:
        usages.append(Usage("inertia about the flange axis (J6)", float(inertia[2, 2]),
                            robot.max_flange_inertia_kgm2, "kg·m²"))
    return PayloadResult(props.mass_kg, cog, offset, float(cog[2]), radial, inertia, usages)


def check_grip(mass_kg: float, grip: GripSpec) -> GripResult:
    """Normal force each finger must apply so friction carries weight plus inertia forces."""
    weight = mass_kg * G
    total = mass_kg * (G + grip.acceleration_m_s2) * grip.safety_factor / grip.friction_coefficient
    per_finger = total / grip.fingers
    usage = None
    if grip.rated_force_n is not None:
        usage = Usage("grip force per finger", per_finger, grip.rated_force_n, "N")
    return GripResult(per_finger, total, weight, usage)
