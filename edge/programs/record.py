"""From a program file's bytes to a ``shared.cnc.ProgramRecord``: decode, pick the dialect, tokenize,
interpret, and shape the result. Pure (no I/O): the harvester reads the file and calls ``analyse``.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

from edge.programs.interp import Interpreter, Limits, Result
from edge.programs.profiles import MachineProfile
from edge.programs.tokens import tokenize
from shared.cnc import Diagnostic, Estimate, ProgramRecord, ToolUse

__all__ = ["DIALECT_BY_EXTENSION", "analyse", "guess_dialect"]

DIALECT_BY_EXTENSION = {".mpf": "siemens", ".spf": "siemens", ".min": "okuma", ".ssb": "okuma", ".sub": "okuma",
                        ".ngc": "linuxcnc"}
_MAX_LIST = 1000


def guess_dialect(name: str, text: str) -> str:
    """The dialect a file is written in: by its extension, and Haas by its Haas-only words."""
    dialect = DIALECT_BY_EXTENSION.get(PurePosixPath(name).suffix.lower())
    if dialect is not None:
        return dialect
    head = text[:20_000].upper()
    if "HAAS" in head or "M97" in head or "G187" in head:
        return "haas"
    return "fanuc"


def decode(data: bytes) -> str:
    """Program text: UTF-8 where it is, else Latin-1 (old controls' files); NULs and CRs dropped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r", "").replace("\x00", "")


def analyse(data: bytes, *, path: str, folder: str, mtime: float, profile: MachineProfile,
            dialect: str | None = None, limits: Limits | None = None,
            tool_diameters: dict[int, float] | None = None) -> ProgramRecord:
    """The record of one program file. Never raises on the file's content (diagnostics say what is wrong)."""
    text = decode(data)
    chosen = dialect or guess_dialect(path, text)
    blocks = tokenize(text, dialect=chosen)
    try:
        result = Interpreter(blocks, dialect=chosen, profile=profile, limits=limits,
                             tool_diameters=tool_diameters).run()
    except (ArithmeticError, ValueError) as exc:  # a defect of ours on a strange program: reported, not raised
        result = Result(completed=False, diagnostics=[(0, "error", f"the program could not be interpreted ({exc})")])
    if result.number is None and chosen in ("siemens", "okuma", "linuxcnc"):
        result.number = PurePosixPath(path).stem[:64] or None
    return _record(result, data, text, path=path, folder=folder, mtime=mtime, dialect=chosen, profile=profile)


def _record(result: Result, data: bytes, text: str, *, path: str, folder: str, mtime: float, dialect: str,
            profile: MachineProfile) -> ProgramRecord:
    tools = [ToolUse(tool=t.tool, comment=t.comment, diameter_mm=t.diameter_mm, type=t.type,
                     length_offset=t.length_offset, spindle_rpm=t.rpm[:_MAX_LIST], feeds_mm_min=t.feeds[:_MAX_LIST],
                     feed_mm=t.feed_mm, rapid_mm=t.rapid_mm, holes=t.holes, time_s=t.time_s)
             for t in result.tools[:_MAX_LIST]]
    tool_change_s = result.tool_changes * profile.tool_change
    estimate = None
    if result.completed:
        estimate = Estimate(profile=profile.name, feed_s=result.feed_s, rapid_s=result.rapid_s,
                            tool_changes=result.tool_changes, tool_change_s=tool_change_s, dwell_s=result.dwell_s,
                            other_s=result.other_s,
                            total_s=result.feed_s + result.rapid_s + tool_change_s + result.dwell_s + result.other_s)
    return ProgramRecord(
        sha256=hashlib.sha256(data).hexdigest(), path=path[:1024], folder=folder[:256], size=len(data),
        mtime=mtime, lines=text.count("\n") + (0 if text.endswith("\n") or not text else 1), dialect=dialect,
        number=result.number[:64] if result.number else None, header=result.header, units=result.units,
        tools=tools, offsets=[o[:32] for o in result.offsets], subprograms=[s[:64] for s in result.subprograms],
        holes=result.holes, feed_mm=result.feed_mm, rapid_mm=result.rapid_mm, estimate=estimate,
        diagnostics=[Diagnostic(line=line, level=level, message=message)
                     for line, level, message in result.diagnostics],
    )
