"""A machine profile: what a cycle-time estimate needs to know about a machine tool.

Rates are per axis (a machine's Z is often slower than X and Y); acceleration is one figure per axis too.
The defaults are a typical small vertical machining centre. A profile is part of a harvester's config
(``[sources.machine_profile]``); per-machine corrections measured from real runs are applied by the cloud
(``shared.cycletime``).
"""

from __future__ import annotations

from pydantic import Field

from shared.configbase import StrictModel

__all__ = ["MachineProfile"]


class MachineProfile(StrictModel):
    """The figures of one machine tool, in mm, mm/min, mm/s² and seconds."""

    name: str = Field("default", min_length=1, max_length=64)
    rapid_x: float = Field(30_000.0, gt=0, le=500_000, description="X rapid rate, mm/min")
    rapid_y: float = Field(30_000.0, gt=0, le=500_000, description="Y rapid rate, mm/min")
    rapid_z: float = Field(24_000.0, gt=0, le=500_000, description="Z rapid rate, mm/min")
    max_feed: float = Field(10_000.0, gt=0, le=500_000, description="highest programmable feed, mm/min")
    accel_x: float = Field(2_000.0, gt=0, le=100_000, description="X acceleration, mm/s²")
    accel_y: float = Field(2_000.0, gt=0, le=100_000, description="Y acceleration, mm/s²")
    accel_z: float = Field(1_500.0, gt=0, le=100_000, description="Z acceleration, mm/s²")
    tool_change: float = Field(4.0, ge=0, le=600, description="seconds, chip to chip")
    spindle_start: float = Field(1.0, ge=0, le=120, description="seconds for the spindle to reach speed")
    default_feed: float = Field(500.0, gt=0, le=500_000,
                                description="mm/min assumed for a feed move before any F word")
    default_rpm: float = Field(1_000.0, gt=0, le=200_000,
                               description="rev/min assumed for feed per revolution (G95) before any S word")
