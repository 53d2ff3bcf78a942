"""Request and response models of the physics API (and the CLI's ``--json``), units in every field.

SI throughout (m, m², m³, kg, kg·m², N, rad) with ``*_m`` style names; fields
named ``*_unit`` repeat a value in the assembly's unit for people who think in mm.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.physics.assembly import PoseSpec
from cloud.physics.mates import MateSpec
from cloud.physics.robot import GripSpec, RobotSpec
from cloud.physics.units import DEFAULT_TOLERANCE_M

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests ---------------------------------------------------------------------------
Poses = dict[str, PoseSpec]
_POSES = "parts moved for this request only (the stored assembly is unchanged); translation in the assembly unit"


class CollisionRequest(_Model):
    assembly_id: str = Field(description="id returned by POST /assemblies")
    tolerance_m: float = Field(default=DEFAULT_TOLERANCE_M, gt=0, le=0.01, description="touching tolerance, metres")
    poses: Poses | None = Field(default=None, description=_POSES)


class ClearanceRequest(_Model):
    assembly_id: str
    threshold_m: float = Field(default=0.005, ge=0, le=100, description="report pairs closer than this, metres")
    tolerance_m: float = Field(default=DEFAULT_TOLERANCE_M, gt=0, le=0.01, description="touching tolerance, metres")
    poses: Poses | None = Field(default=None, description=_POSES)


class MassRequest(_Model):
    assembly_id: str
    parts: list[str] | None = Field(default=None, description="parts to include; default all")
    frame: PoseSpec | None = Field(
        default=None, description="frame for the inertia tensor; translation in the assembly unit")


class ConstraintRequest(_Model):
    assembly_id: str
    mates: list[MateSpec] | None = Field(default=None, description="mates to use instead of the stored ones")
    poses: dict[str, PoseSpec] | None = Field(default=None, description="start (solve) or checked (validate) poses")
    max_starts: int = Field(default=10, ge=1, le=100, description="multi-start attempts")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="random seed of the multi-start")


class RobotCheckRequest(_Model):
    assembly_id: str
    payload_parts: list[str] | None = Field(default=None, description="parts the robot carries; default all")
    flange: PoseSpec = Field(default_factory=PoseSpec, description="tool flange pose; translation in the assembly unit")
    robot: RobotSpec
    grip: GripSpec | None = None


# --- responses --------------------------------------------------------------------------
class PartInfo(_Model):
    name: str
    faces: int
    closed: bool = Field(description="watertight and orientable: volume-based results are valid")
    unit: str
    material: str
    repairs: list[str]
    flags: list[str] = Field(description="defects and what they mean for each result")


class AssemblyInfo(_Model):
    id: str
    name: str
    unit: str = Field(description="unit of poses and mate distances")
    parts: list[PartInfo]
    mates: int
    warnings: list[str]


State = Literal["interfering", "touching", "clear"]


class ContactOut(_Model):
    """Where two parts meet or overlap: a box around the region and sample points on each surface."""

    box_min_m: Vec3 = Field(description="region box, low corner, world frame, metres")
    box_max_m: Vec3 = Field(description="region box, high corner, world frame, metres")
    points_a_m: list[Vec3] = Field(default_factory=list,
                                   description="points on a's surface in the region (at most 64), metres")
    points_b_m: list[Vec3] = Field(default_factory=list,
                                   description="points on b's surface in the region (at most 64), metres")


class PairOut(_Model):
    a: str
    b: str
    status: State = Field(description="interfering (share volume thicker than the tolerance, or one inside the "
                                      "other), touching (within the tolerance), clear (farther apart)")
    distance_m: float = Field(description="clear: the minimum surface distance; touching: the gap measured "
                                          "(at most the tolerance); interfering: 0; metres")
    distance_unit: float = Field(description="the same in the assembly unit")
    point_a_m: Vec3 | None = Field(default=None, description="closest point on a, world frame, metres")
    point_b_m: Vec3 | None = Field(default=None, description="closest point on b, world frame, metres")
    volume_m3: float | None = Field(default=None, description="exact overlap volume, m³")
    volume_unit3: float | None = Field(default=None, description="overlap volume in the assembly unit cubed")
    centroid_m: Vec3 | None = Field(default=None, description="centroid of the overlap, metres")
    depth_m: float | None = Field(default=None, description="penetration depth: the overlap's thickness, metres")
    extent_m: Vec3 | None = Field(default=None, description="size of the overlap's box along x, y, z, metres")
    contact: ContactOut | None = Field(default=None, description="the contact or overlap region on both parts")
    faces_a: list[int] = Field(default_factory=list,
                               description="indices of a's mesh triangles in contact or overlap")
    faces_b: list[int] = Field(default_factory=list,
                               description="indices of b's mesh triangles in contact or overlap")
    note: str = ""


class CollisionResponse(_Model):
    assembly_id: str
    unit: str
    tolerance_m: float = Field(description="touching tolerance used, metres")
    numeric_accuracy_m: float = Field(description="accuracy of distances and points, metres")
    interfering: int
    touching: int
    pairs: list[PairOut] = Field(description="pairs that touch or interfere; all others are clear")
    warnings: list[str] = Field(default_factory=list, description="what may make these answers wrong")


class ClearanceResponse(_Model):
    assembly_id: str
    unit: str
    threshold_m: float
    tolerance_m: float = Field(description="touching tolerance used, metres")
    numeric_accuracy_m: float
    minimum: PairOut | None = Field(description="the closest pair of the assembly (interfering pairs first)")
    pairs: list[PairOut] = Field(description="pairs closer than the threshold: interfering, then touching, "
                                             "then clear nearest first")
    warnings: list[str] = Field(default_factory=list, description="what may make these answers wrong")


class MassOut(_Model):
    volume_m3: float
    mass_kg: float
    com_m: Vec3 = Field(description="centre of mass, metres (part frame for parts, world for the assembly)")
    com_unit: Vec3 = Field(description="centre of mass in the assembly/part unit")
    inertia_com_kgm2: Mat3 = Field(description="inertia tensor about the CoM, axes of the frame, kg·m²")
    inertia_frame_kgm2: Mat3 | None = Field(default=None, description="inertia about the requested frame, kg·m²")
    principal_moments_kgm2: Vec3
    principal_axes: Mat3 = Field(description="columns are the principal axes (unit vectors)")
    surface_area_m2: float
    bound_volume_m3: float = Field(description="tessellation error bound on the volume, m³")
    bound_com_m: float = Field(description="tessellation error bound on the CoM position, m")
    bound_inertia_kgm2: float = Field(description="tessellation error bound per inertia component, kg·m²")
    max_deviation_m: float = Field(description="largest estimated mesh-to-surface gap, m")


class PartMassOut(_Model):
    name: str
    material: str
    density_kg_m3: float
    world: MassOut | None = Field(default=None, description="in the world frame; null if refused")
    local: MassOut | None = Field(default=None, description="in the part frame and unit; null if refused")
    error: str | None = Field(default=None, description="why the part's mass properties were refused")


class OverlapMassOut(_Model):
    a: str
    b: str
    volume_m3: float = Field(description="volume both parts claim, m³")
    mass_kg: float = Field(description="mass counted twice because of it, kg (the smaller density of the two)")


class MassResponse(_Model):
    assembly_id: str
    unit: str
    parts: list[PartMassOut]
    assembly: MassOut | None = Field(description="all included parts, world frame; null if any refused")
    overlaps: list[OverlapMassOut] = Field(
        default_factory=list,
        description="pairs of included parts that share volume (interfering, or touching with an overlap "
                    "thinner than the tolerance): their shared volume is counted in both parts")
    warnings: list[str] = Field(default_factory=list, description="what may make these answers wrong")


class MotionOut(_Model):
    kind: Literal["translation", "rotation", "screw"]
    direction: Vec3 = Field(description="translation direction or rotation axis (unit vector, world)")
    point_m: Vec3 | None = Field(default=None, description="a point on the rotation axis, metres")
    pitch_m_per_rad: float = 0.0


class PartDofOut(_Model):
    part: str
    dof: int = Field(description="independent motions left to this part relative to the ground")
    motions: list[MotionOut]


class MateResidualOut(_Model):
    index: int
    name: str
    type: str
    length_residual_m: float = Field(description="largest positional error of the mate, metres")
    angle_residual: float = Field(description="largest direction error (≈ radians)")
    violated: bool


class RedundantOut(_Model):
    index: int
    name: str
    equations: int = Field(description="independent equations the mate has on its own")
    independent: int = Field(description="how many of them the earlier mates did not already impose")


class ConstraintResponse(_Model):
    assembly_id: str
    unit: str
    converged: bool = Field(description="every mate satisfied within tolerance")
    tolerance: float = Field(description="residual tolerance, relative to the assembly size")
    poses: dict[str, list[list[float]]] = Field(description="4×4 poses; translation in the assembly unit")
    violated: list[MateResidualOut]
    residuals: list[MateResidualOut]
    redundant: list[RedundantOut] = Field(description="mates that add no constraint")
    partly_redundant: list[RedundantOut] = Field(description="mates some of whose equations repeat others")
    conflicting: list[str] = Field(description="a minimal set of mates that cannot hold together")
    dof_total: int
    parts: list[PartDofOut]
    grounded: list[str]
    starts: int
    notes: list[str]


class UsageOut(_Model):
    name: str
    value: float
    limit: float | None
    unit: str
    utilisation_percent: float | None


class RobotCheckResponse(_Model):
    assembly_id: str
    ok: bool
    mass_kg: float
    cog_flange_m: Vec3 = Field(description="CoG in the flange frame, metres")
    offset_m: float = Field(description="CoG distance from the flange centre, metres")
    inertia_flange_kgm2: Mat3 = Field(description="inertia about the flange origin, flange axes, kg·m²")
    usages: list[UsageOut]
    grip_force_per_finger_n: float | None = None
    grip_total_force_n: float | None = None
    grip_usage: UsageOut | None = None


# --- the picture (GET /assemblies/{id}/picture.json) ----------------------------------------
class PictureFacesOut(_Model):
    """One part's triangles in one problem pair."""

    pair: int = Field(description="index into the response's pairs")
    other: str = Field(description="the other part of that pair")
    state: State
    colour: str = Field(description="colour of these faces, #rrggbb")
    faces: list[int] = Field(description="indices into the part's stored (repaired) mesh triangles")


class PicturePartOut(_Model):
    """A part in at least one touching or interfering pair; parts not listed are drawn in other_parts_colour."""

    name: str
    state: State = Field(description="the worst state of its pairs")
    colour: str = Field(description="colour of that state, #rrggbb")
    label_at_m: Vec3 = Field(description="where its label points: the centre of its box, world frame, metres")
    faces: list[PictureFacesOut] = Field(description="its colliding faces, per pair")


class PicturePairOut(_Model):
    index: int
    a: str
    b: str
    state: State
    colour: str = Field(description="#rrggbb")
    box_min_m: Vec3 = Field(description="contact or overlap region box, low corner, world frame, metres")
    box_max_m: Vec3 = Field(description="contact or overlap region box, high corner, world frame, metres")
    centroid_m: Vec3 = Field(description="the overlap's centroid, else the region box's centre, metres")
    points_a_m: list[Vec3] = Field(default_factory=list, description="points on a's surface in the region, metres")
    points_b_m: list[Vec3] = Field(default_factory=list, description="points on b's surface in the region, metres")
    volume_m3: float | None = Field(default=None, description="overlap volume, m³")
    depth_m: float | None = Field(default=None, description="penetration depth, metres")
    view: int | None = Field(default=None, description="index of the zoomed view showing this pair, if any")


class PictureViewOut(_Model):
    """A camera (orthographic): looks at target_m from target_m + direction."""

    kind: Literal["overview", "pair"]
    title: str
    target_m: Vec3 = Field(description="the point looked at, world frame, metres")
    direction: Vec3 = Field(description="unit vector from the target towards the camera")
    half_extent_m: float = Field(description="half the side of the cube shown, metres")
    pairs: list[int] = Field(description="indices of the pairs this view is about")


class PictureResponse(_Model):
    assembly_id: str
    name: str
    unit: str = Field(description="the assembly unit, used for labels and the scale bar of the PNG")
    tolerance_m: float = Field(description="touching tolerance used, metres")
    colours: dict[str, str] = Field(description="colour of each state, #rrggbb; clear = other parts")
    box_min_m: Vec3 = Field(description="the assembly's box, low corner, metres")
    box_max_m: Vec3 = Field(description="the assembly's box, high corner, metres")
    parts: list[PicturePartOut] = Field(description="parts in a touching or interfering pair")
    pairs: list[PicturePairOut] = Field(description="touching and interfering pairs, worst first")
    views: list[PictureViewOut] = Field(description="the overview, then one view per pair shown zoomed")
    more: int = Field(default=0, description="pairs without a zoomed view of their own")
    warnings: list[str] = Field(default_factory=list)
