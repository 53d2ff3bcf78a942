"""A tool as the harvester reports it, and what a tool's comment says about it: diameter and type.

CAM posts and programmers write tool comments in many ways: ``(T1 D=10. CR=0. - FLAT END MILL)``,
``(10MM DRILL)``, ``(1/2 END MILL)``, ``(DIA .500 SPOT DRILL)``, ``(Ø6 REAMER)``. A number with MM or IN is
taken in that unit; a bare D/DIA number in the program's units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["ToolStats", "diameter_from_comment", "tool_from_comment", "type_from_comment"]

_NUM = r"(\d+\.?\d*|\.\d+)"
_FRACTION = re.compile(r"(?<![\d.])(\d+)\s*/\s*(\d+)\s*(?:\"|IN\b|INCH)?")
_WITH_UNIT = re.compile(_NUM + r"\s*(MM|IN\b|INCH|\")")
_DIA = re.compile(r"(?:\bDIA(?:METER)?\.?\s*=?\s*|\bD\s*=\s*|\bD(?=\d|\.\d)|Ø\s*|⌀\s*)" + _NUM)
_TYPES = (
    ("center drill", ("CENTER DRILL", "CENTRE DRILL", "CTR DRILL")),
    ("spot drill", ("SPOT",)),
    ("thread mill", ("THREAD MILL", "THREADMILL")),
    ("tap", ("TAP",)),
    ("reamer", ("REAM",)),
    ("drill", ("DRILL",)),
    ("ball mill", ("BALL",)),
    ("bull nose mill", ("BULL",)),
    ("chamfer mill", ("CHAMFER", "CHAMF")),
    ("face mill", ("FACE",)),
    ("boring bar", ("BORE", "BORING")),
    ("slot mill", ("SLOT",)),
    ("end mill", ("END MILL", "ENDMILL", "FLAT", "EM ")),
    ("engraver", ("ENGRAV",)),
)


@dataclass
class ToolStats:
    """One use of a tool while the interpreter runs (``shared.cnc.ToolUse`` at the end)."""

    tool: int
    comment: str | None = None
    diameter_mm: float | None = None
    type: str | None = None
    length_offset: int | None = None
    rpm: list[float] = field(default_factory=list)
    feeds: list[float] = field(default_factory=list)
    feed_mm: float = 0.0
    rapid_mm: float = 0.0
    holes: int = 0
    time_s: float = 0.0


def diameter_from_comment(comment: str, scale: float = 1.0) -> float | None:
    """The diameter in mm a comment gives, or None. ``scale`` converts a bare number (25.4 in G20)."""
    text = comment.upper()
    match = _DIA.search(text)
    if match is not None:
        after = text[match.end():match.end() + 5].lstrip()
        unit = 25.4 if after.startswith(("IN", '"')) else 1.0 if after.startswith("MM") else scale
        return _positive(float(match.group(1)) * unit)
    match = _FRACTION.search(text)
    if match is not None and int(match.group(2)) in (2, 4, 8, 16, 32, 64):
        return _positive(int(match.group(1)) / int(match.group(2)) * 25.4)
    match = _WITH_UNIT.search(text)
    if match is not None:
        return _positive(float(match.group(1)) * (1.0 if match.group(2) == "MM" else 25.4))
    return None


def _positive(value: float) -> float | None:
    return value if 0.0 < value < 10_000.0 else None


def type_from_comment(comment: str) -> str | None:
    text = comment.upper() + " "
    for name, keys in _TYPES:
        if any(key in text for key in keys):
            return name
    return None


def tool_from_comment(number: int, comment: str | None, scale: float = 1.0) -> ToolStats:
    tool = ToolStats(tool=max(number, 0), comment=comment[:256] if comment else None)
    if comment:
        tool.diameter_mm = diameter_from_comment(comment, scale)
        tool.type = type_from_comment(comment)
    return tool
