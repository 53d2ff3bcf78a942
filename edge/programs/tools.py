"""A tool as the harvester reports it, and what a tool's comment says about it: diameter and type.

CAM posts and programmers write tool comments in many ways: ``(T1 D=10. CR=0. - FLAT END MILL)``,
``(10MM DRILL)``, ``(1/2 END MILL)``, ``(DIA .500 SPOT DRILL)``, ``(Ø6 REAMER)``. A number with MM or IN is
taken in that unit; a bare D/DIA number in the program's units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["ToolStats", "diameter_from_comment", "names_tool", "tool_from_comment", "tool_list_entry",
           "type_from_comment"]

_NUM = r"(\d+\.?\d*|\.\d+)"
_FRACTION = re.compile(r"(?<![\d.])(\d+)\s*/\s*(\d+)\s*(?:\"|IN\b|INCH)?")
_WITH_UNIT = re.compile(_NUM + r"\s*(MM|IN\b|INCH|\")")
# "DIA .5", "TOOL DIA. - .5" (Mastercam), "D=10." (Fusion), "Ø6"
_DIA = re.compile(r"(?:\bDIA(?:METER)?\.?\s*[-=:]?\s*|\bD\s*=\s*|Ø\s*|⌀\s*)" + _NUM)
_BARE_D = re.compile(r"\bD" + _NUM)  # "D10 FLAT": a diameter, unless the comment lists H and D offsets
_OFFSET_WORD = re.compile(r"\bH\d")
_TOOL_LIST = re.compile(r"\s*T\s*(\d{1,5})(?!\d)")
_TYPES = tuple((name, re.compile("|".join(rf"\b{key}" for key in keys))) for name, keys in (
    ("center drill", ("CENTER DRILL", "CENTRE DRILL", "CTR DRILL")),
    ("spot drill", ("SPOT",)),
    ("thread mill", ("THREAD MILL", "THREADMILL")),
    ("tap", ("TAP(?!ER)",)),  # not "TAPER=118DEG", the point angle of a drill
    ("reamer", ("REAM",)),
    ("drill", ("DRILL",)),
    ("ball mill", ("BALL",)),
    ("bull nose mill", ("BULL",)),
    ("chamfer mill", ("CHAMF",)),
    ("face mill", ("FACE",)),
    ("boring bar", ("BORE", "BORING")),
    ("slot mill", ("SLOT",)),
    ("end mill", ("END MILL", "ENDMILL", "FLAT", "EM ")),
    ("engraver", ("ENGRAV",)),
))


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
        return _in_unit(text, match, scale)
    match = _FRACTION.search(text)
    if match is not None and int(match.group(2)) in (2, 4, 8, 16, 32, 64):
        return _positive(int(match.group(1)) / int(match.group(2)) * 25.4)
    match = _WITH_UNIT.search(text)
    if match is not None:
        return _positive(float(match.group(1)) * (1.0 if match.group(2) == "MM" else 25.4))
    match = _BARE_D.search(text)
    if match is not None and _OFFSET_WORD.search(text) is None:  # "| H1 | D1 |" names offset registers
        return _in_unit(text, match, scale)
    return None


def _in_unit(text: str, match: re.Match[str], scale: float) -> float | None:
    after = text[match.end():match.end() + 5].lstrip()
    unit = 25.4 if after.startswith(("IN", '"')) else 1.0 if after.startswith("MM") else scale
    return _positive(float(match.group(1)) * unit)


def tool_list_entry(comment: str) -> int | None:
    """The tool a header comment describes (``T1 D=12. FLAT END MILL``, ``T1 | 1/2 FLAT ENDMILL | H1``)."""
    match = _TOOL_LIST.match(comment.upper())
    return int(match.group(1)) if match is not None else None


def names_tool(comment: str, number: int) -> bool:
    """Whether a comment names tool ``number`` (T1 is not T12)."""
    return re.search(rf"\bT\s*0*{number}(?!\d)", comment.upper()) is not None


def _positive(value: float) -> float | None:
    return value if 0.0 < value < 10_000.0 else None


def type_from_comment(comment: str) -> str | None:
    text = comment.upper() + " "
    for name, pattern in _TYPES:
        if pattern.search(text):
            return name
    return None


def tool_from_comment(number: int, comment: str | None, scale: float = 1.0) -> ToolStats:
    tool = ToolStats(tool=max(number, 0), comment=comment[:256] if comment else None)
    if comment:
        tool.diameter_mm = diameter_from_comment(comment, scale)
        tool.type = type_from_comment(comment)
    return tool
