"""Cutter compensation (G40-G42): how much the offset path differs in length from the programmed one, as
LinuxCNC draws it. The entry move runs to the offset end point (a line perpendicular to itself; an arc with the
same sweep to the offset end); arcs run at radius -/+ tool radius; corners turning away from the tool get an arc
of the tool radius, corners turning towards it shorten both moves; the move after G40 leaves from the offset end
of the last move. Without a known tool diameter the programmed path is taken, with a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.programs.geometry import PLANES, corner_change, entry_arc_length

if TYPE_CHECKING:
    from edge.programs.tokens import Block

__all__ = ["CompensationMixin"]


class CompensationMixin:
    """Mixed into the interpreter: uses its plane, current tool and diagnostics."""

    plane: int
    comp: int
    comp_radius: float
    comp_tangent: float | None
    comp_entry: bool
    comp_exit: tuple[float, float] | None
    tool_diameters: dict[int, float]
    current_tool: Callable[[], Any]
    diag: Callable[..., None]

    def _compensation(self, code: float, w: dict[str, float], block: Block) -> None:
        if code == 40.0:
            if self.comp and self.comp_tangent is not None:
                # the move after G40 starts from the offset end of the last move (perpendicular to it)
                side = self.comp * self.comp_radius
                self.comp_exit = (-math.sin(self.comp_tangent) * side, math.cos(self.comp_tangent) * side)
            self.comp = 0
            return
        tool = self.current_tool()
        diameter = tool.diameter_mm
        if "D" in w and int(w["D"]) in self.tool_diameters:  # D names the offset: the tool table's diameter
            diameter = self.tool_diameters[int(w["D"])]
        if diameter is None:
            self.diag(block.line, "warning", f"cutter compensation with tool T{tool.tool} of unknown diameter: "
                      "lengths are those of the programmed path", once=f"comp T{tool.tool}")
            diameter = 0.0
        self.comp = 1 if code == 41.0 else -1
        self.comp_radius = diameter / 2.0
        self.comp_tangent = None
        self.comp_entry = True

    def _comp_line(self, dx: float, dy: float, dz: float, length: float) -> float:
        """The change cutter compensation makes to a straight move's length (see ``geometry.corner_change``)."""
        a, b, _ = PLANES[self.plane]
        d = (dx, dy, dz)
        if self.comp_exit is not None:  # the move after G40 leaves the offset path for the programmed end
            o1, o2 = self.comp_exit
            self.comp_exit = None
            self.comp_tangent = None
            return math.hypot(d[a] - o1, d[b] - o2, d[3 - a - b]) - length
        in_plane = math.hypot(d[a], d[b])
        if in_plane < 1e-12:
            return 0.0
        tangent = math.atan2(d[b], d[a])
        if self.comp_entry:
            self.comp_entry = False
            self.comp_tangent = tangent
            return math.hypot(length, self.comp_radius) - length
        change = 0.0
        if self.comp_tangent is not None:
            change = corner_change(self.comp_tangent, tangent, self.comp, self.comp_radius)
        self.comp_tangent = tangent
        return change

    def _comp_arc(self, length: float, radius: float, clockwise: bool, t0: float, t1: float, sweep: float,
                  dn: float) -> float:
        # the tool is inside a CCW arc with G41 (centre on the left), outside it with G42; mirrored for CW
        inside = (self.comp == 1) != clockwise
        offset = max(radius - self.comp_radius if inside else radius + self.comp_radius, 0.0)
        if self.comp_entry:
            self.comp_entry = False
            self.comp_tangent = t1
            return entry_arc_length(length, radius, sweep, dn, offset)
        change = 0.0
        if self.comp_tangent is not None:
            change = corner_change(self.comp_tangent, t0, self.comp, self.comp_radius)
        self.comp_tangent = t1
        planar = sweep * offset
        return math.hypot(planar, dn) + change
