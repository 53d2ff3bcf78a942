"""What the edge's program harvester reports about a CNC program, and what the cloud stores and searches.

A program is identified by the sha256 of its bytes: a rescan of an unchanged file reports nothing, an edit
reports one new record, and a rename reports the same hash under a new path (``renamed_from``). Lengths are in
millimetres and times in seconds whatever the program's own units (G20 programs are converted).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["WHOLE_MAX", "Diagnostic", "Estimate", "ProgramRecord", "ToolUse"]

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
WHOLE_MAX = 2**63 - 1  # every whole number fits a 64-bit column (SQLite INTEGER, PostgreSQL BIGINT)
Dialect = Literal["fanuc", "haas", "linuxcnc", "siemens", "okuma"]
MAX_LIST = 1000


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Diagnostic(_Record):
    """A problem found in a program, by line: the harvester reports it and goes on."""

    line: int = Field(ge=0, le=WHOLE_MAX, description="1-based line number; 0 for the whole file")
    level: Literal["error", "warning"]
    message: str = Field(min_length=1, max_length=512)


class ToolUse(_Record):
    """One use of a tool, in program order (a tool used twice appears twice)."""

    tool: int = Field(ge=0, le=WHOLE_MAX, description="the T number")
    comment: str | None = Field(None, max_length=256, description="the comment on the tool-change line")
    diameter_mm: NonNeg | None = Field(None, description="read from the comment (D10, 10MM, 1/2 IN, ...)")
    type: str | None = Field(None, max_length=64, description="read from the comment: drill, end mill, tap, ...")
    length_offset: int | None = Field(None, ge=0, le=WHOLE_MAX, description="the H number of its G43")
    spindle_rpm: list[NonNeg] = Field(default_factory=list, max_length=MAX_LIST, description="S values, in order")
    feeds_mm_min: list[NonNeg] = Field(default_factory=list, max_length=MAX_LIST,
                                       description="F values converted to mm/min, in order (G95 feeds per rev "
                                                   "multiplied by the spindle speed)")
    feed_mm: NonNeg = Field(0.0, description="path length at feed (G1-G3 and canned-cycle feeds)")
    rapid_mm: NonNeg = Field(0.0, description="path length at rapid (G0, G28 and canned-cycle rapids)")
    holes: int = Field(0, ge=0, le=WHOLE_MAX, description="holes drilled, bored or tapped by canned cycles")
    time_s: NonNeg = Field(0.0, description="estimated time with this tool, tool change included")


class Estimate(_Record):
    """The cycle-time estimate and its parts, from the machine profile named."""

    profile: str = Field(max_length=64)
    total_s: NonNeg
    feed_s: NonNeg
    rapid_s: NonNeg
    tool_changes: int = Field(ge=0, le=WHOLE_MAX)
    tool_change_s: NonNeg
    dwell_s: NonNeg
    other_s: NonNeg = Field(0.0, description="what else the profile adds (spindle starts, M-codes)")


class ProgramRecord(_Record):
    """A harvested program: the body of a ``program`` document (``shared.batch.Document``)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    path: str = Field(max_length=1024, description="relative to the watched folder")
    folder: str = Field(max_length=256, description="the harvester folder's name in the edge config")
    renamed_from: str | None = Field(None, max_length=1024)
    size: int = Field(ge=0, le=WHOLE_MAX)
    mtime: Finite
    lines: int = Field(ge=0, le=WHOLE_MAX)
    dialect: Dialect
    number: str | None = Field(None, max_length=64, description="O-number or program name, as written")
    header: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=50,
                                                                description="the comments before the first move")
    units: Literal["mm", "inch"]
    tools: list[ToolUse] = Field(default_factory=list, max_length=MAX_LIST)
    offsets: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=MAX_LIST,
                                                                description="work offsets in order of first use: "
                                                                            "G54..G59, G54.1 P1..")
    subprograms: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=MAX_LIST,
                                                                    description="called subprograms (M98 P..)")
    holes: int = Field(0, ge=0, le=WHOLE_MAX)
    feed_mm: NonNeg = 0.0
    rapid_mm: NonNeg = 0.0
    estimate: Estimate | None = Field(None, description="missing when the program could not be interpreted")
    diagnostics: list[Diagnostic] = Field(default_factory=list, max_length=200)
