"""Lathe programs (Fanuc lathes, Okuma LB/LU): what differs from a machining centre, as far as lengths and times
need it. A program is taken as a lathe's when it has no M6 and uses lathe words (U/W incremental axes, G96
constant surface speed, or turret T words: T0101, Okuma's T010101).

On a lathe the T word itself indexes the turret (T0101: tool 1, offset 1), X is a diameter (a move of X10 is
5 mm of travel), U and W are X and Z incremental, Fanuc's G98/G99 are feed per minute/per revolution (not the
canned cycles' retract levels), G50 S caps the spindle speed and G96 S is a surface speed in m/min: the spindle
speed follows the diameter being cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.programs.tokens import Block

__all__ = ["LatheMixin", "is_lathe"]

_CSS_TOP_RPM = 4_000.0  # a typical lathe's top speed, when the program sets no G50 S limit


def is_lathe(blocks: list[Block], dialect: str) -> bool:
    """Whether the program is a lathe's (see the module's docstring)."""
    lathe = False
    for block in blocks:
        for letter, value in block.words:
            if letter == "M" and value == 6.0:
                return False
            if letter in ("U", "W") or (letter == "G" and value == 96.0) or (
                    letter == "T" and dialect != "siemens" and isinstance(value, float) and value >= 100):
                lathe = True  # T0101: a turret's tool and offset (a mill changes tools with M6)
    return lathe


class LatheMixin:
    """Mixed into the interpreter: lathe words become the machining centre's, in radius."""

    pos: list[float]
    scale: float
    absolute: bool
    dialect: str
    tool: Any
    pending_tool: int | None
    per_rev: bool
    tool_change: Callable[[Block], None]

    def init_lathe(self, lathe: bool) -> None:
        self.lathe = lathe
        self.css: float | None = None  # G96 surface speed, m/min
        self.top_rpm: float | None = None  # G50 S

    def lathe_words(self, g: list[float], w: dict[str, float]) -> None:
        """Diameters to radii and U/W to X/Z (axis words in program units, as the rest reads them)."""
        if 4.0 in g:  # G4 U1.5 is a dwell
            return
        if "X" in w:
            w["X"] *= 0.5
        elif "U" in w:
            w["X"] = (self.pos[0] / self.scale if self.absolute else 0.0) + w["U"] * 0.5
        if "Z" not in w and "W" in w:
            w["Z"] = (self.pos[2] / self.scale if self.absolute else 0.0) + w["W"]

    def lathe_modes(self, g: list[float], w: dict[str, float]) -> bool:
        """Feed modes and spindle speed words of a lathe block; True when its S word was a limit, not a speed."""
        limit = False
        for code in g:
            if code in (98.0, 99.0) and self.dialect != "okuma":
                self.per_rev = code == 99.0
            elif code == 96.0:
                self.css = w.get("S", self.css)
            elif code == 97.0:
                self.css = None
            elif code in (50.0, 92.0) and "S" in w:
                self.top_rpm, limit = abs(w["S"]), True
        return limit or (self.css is not None and "S" in w)

    def turret(self, value: float, block: Block) -> None:
        """A T word on a lathe: T0101 (Fanuc) or T010101 (Okuma) indexes tool 1."""
        number = int(value)
        number = number // 10_000 if number >= 10_000 else number // 100 if number >= 100 else number
        if number <= 0 or (self.tool is not None and self.tool.tool == number):
            return
        self.pending_tool = number
        self.tool_change(block)

    def css_rpm(self) -> float | None:
        """The spindle speed G96 gives at the current diameter, capped by G50 S."""
        if self.css is None:
            return None
        diameter = max(2.0 * abs(self.pos[0]), 1.0)
        return min(1000.0 * self.css / (math.pi * diameter), self.top_rpm or _CSS_TOP_RPM)
