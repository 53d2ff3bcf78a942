"""Move times with acceleration: a move starts and ends at rest (exact stop), accelerating at the profile's
rate to the programmed feed (capped by the machine's highest feed) or, for rapids, each axis to its own rapid
rate; a rapid takes as long as its slowest axis. Controls blend consecutive feed moves, so the estimate is on
the long side for contouring programs: the per-machine calibration (``shared.cycletime``) corrects that.
"""

from __future__ import annotations

import math

from edge.programs.profiles import MachineProfile

__all__ = ["MoveTimer", "trapezoid"]


def trapezoid(length: float, speed: float, accel: float) -> float:
    """Seconds to travel ``length`` mm from rest to rest at most at ``speed`` mm/s with ``accel`` mm/s²."""
    if length <= 0.0:
        return 0.0
    if speed <= 0.0:
        return math.inf
    if length >= speed * speed / accel:
        return length / speed + speed / accel
    return 2.0 * math.sqrt(length / accel)


class MoveTimer:
    """Times moves against one profile (all figures converted to mm/s once)."""

    def __init__(self, profile: MachineProfile) -> None:
        self.profile = profile
        self.rapid = (profile.rapid_x / 60.0, profile.rapid_y / 60.0, profile.rapid_z / 60.0)
        self.accel = (profile.accel_x, profile.accel_y, profile.accel_z)
        self.max_feed = profile.max_feed / 60.0
        self.min_accel = min(self.accel)

    def rapid_time(self, dx: float, dy: float, dz: float) -> float:
        rapid, accel = self.rapid, self.accel
        t = trapezoid(abs(dx), rapid[0], accel[0]) if dx else 0.0
        if dy:
            t = max(t, trapezoid(abs(dy), rapid[1], accel[1]))
        if dz:
            t = max(t, trapezoid(abs(dz), rapid[2], accel[2]))
        return t

    def feed_time(self, length: float, feed_mm_min: float) -> float:
        """A feed move of ``length`` mm at ``feed_mm_min``; the path's acceleration is the lowest axis's."""
        return trapezoid(length, min(feed_mm_min / 60.0, self.max_feed), self.min_accel)
