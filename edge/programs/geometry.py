"""Path geometry for the interpreter: arc centre, sweep and length (R or IJK, full circles, helices,
spirals), and the path-length change cutter compensation makes at a corner. Pure functions on tuples in mm.
"""

from __future__ import annotations

import math

__all__ = ["PLANES", "ArcError", "arc", "corner_change", "entry_arc_length"]

TAU = 2.0 * math.pi
# plane -> (first axis, second axis, normal axis) as indices of (X, Y, Z)
PLANES = {17: (0, 1, 2), 18: (2, 0, 1), 19: (1, 2, 0)}
_RADIUS_TOLERANCE = 0.05  # mm: what LinuxCNC accepts as the difference of start and end radius


class ArcError(ValueError):
    """An arc that cannot be drawn, in plain words."""


def arc(start: tuple[float, float, float], end: tuple[float, float, float], plane: int, clockwise: bool, *,
        radius: float | None = None, centre_offset: tuple[float, float] | None = None,
        turns: int = 1) -> tuple[float, float, float, float, float, float]:
    """(length at the programmed radius, mean radius, start and end tangent angles, sweep, rise) of an arc.

    ``radius``: the R word (negative: the arc longer than a half circle); otherwise ``centre_offset`` from
    the start point in the plane's (first, second) axes. Equal start and end points make a full circle with
    IJK (and an error with R). ``turns`` > 1 adds full turns (LinuxCNC's P word).
    """
    a, b, n = PLANES[plane]
    s1, s2, e1, e2 = start[a], start[b], end[a], end[b]
    dn = end[n] - start[n]
    if radius is not None:
        c1, c2 = _centre_from_radius(s1, s2, e1, e2, radius, clockwise)
    else:
        assert centre_offset is not None
        c1, c2 = s1 + centre_offset[0], s2 + centre_offset[1]
    rs = math.hypot(s1 - c1, s2 - c2)
    re = math.hypot(e1 - c1, e2 - c2)
    if rs == 0.0:
        raise ArcError("the arc's centre is its start point (radius zero)")
    if abs(rs - re) > max(_RADIUS_TOLERANCE, 0.001 * rs):
        raise ArcError(f"the arc's start radius {rs:.4f} mm and end radius {re:.4f} mm differ")
    sa = math.atan2(s2 - c2, s1 - c1)
    ea = math.atan2(e2 - c2, e1 - c1)
    sweep = (sa - ea) if clockwise else (ea - sa)
    sweep %= TAU
    if sweep < 1e-9:
        sweep = TAU if radius is None else 0.0
    sweep += TAU * (max(turns, 1) - 1)
    mean = (rs + re) / 2.0
    length = math.hypot(sweep * mean, dn)
    sign = -1.0 if clockwise else 1.0
    return length, mean, sa + sign * math.pi / 2.0, ea + sign * math.pi / 2.0, sweep, dn


def entry_arc_length(length: float, radius: float, sweep: float, dn: float, offset_radius: float) -> float:
    """An arc that switches cutter compensation on (LinuxCNC): it runs from the programmed start point to the
    offset end point with the same sweep, so its radius is the chord between them over ``2 sin(sweep / 2)``."""
    if sweep >= TAU - 1e-9 or sweep <= 1e-9 or radius <= 0.0:
        return length * offset_radius / radius if radius > 0 else length
    # start at angle 0 on the programmed circle, end at -sweep on the offset one (the chord is the same either way)
    chord = math.hypot(radius - offset_radius * math.cos(sweep), offset_radius * math.sin(sweep))
    new_radius = chord / (2.0 * math.sin(sweep / 2.0))
    return math.hypot(sweep * new_radius, dn)


def _centre_from_radius(s1: float, s2: float, e1: float, e2: float, radius: float,
                        clockwise: bool) -> tuple[float, float]:
    d1, d2 = e1 - s1, e2 - s2
    chord = math.hypot(d1, d2)
    if chord == 0.0:
        raise ArcError("an R arc needs an end point other than its start")
    r = abs(radius)
    half = chord / 2.0
    if half > r:
        if half - r > max(_RADIUS_TOLERANCE, 0.001 * r):
            raise ArcError(f"radius {r:.4f} mm is too small for the end point {chord:.4f} mm away")
        half = r
    h = math.sqrt(max(r * r - half * half, 0.0))
    # the centre is on the left of the chord for a short CCW arc and for a long CW arc
    left = (not clockwise) == (radius > 0)
    k = h / chord if left else -h / chord
    return (s1 + e1) / 2.0 - k * d2, (s2 + e2) / 2.0 + k * d1


def corner_change(before: float, after: float, side: int, tool_radius: float) -> float:
    """How much a corner between tangent angles ``before`` and ``after`` changes the compensated path.

    ``side`` is +1 with the tool on the left of the path (G41) and -1 on the right (G42). A corner turning
    away from the tool adds an arc round the corner (``r * angle``); a corner turning towards it shortens
    both moves (``2 r tan(angle / 2)``, bounded at a right angle's worth for sharp reversals).
    """
    turn = (after - before + math.pi) % TAU - math.pi
    if abs(turn) < 1e-9:
        return 0.0
    if turn * side > 0:  # towards the tool: an inside corner
        return -2.0 * tool_radius * math.tan(min(abs(turn), math.radians(170)) / 2.0)
    return tool_radius * abs(turn)
