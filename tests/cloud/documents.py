"""Documents as an edge sends them, for the cloud's tests: program records, assets, a device model."""

from __future__ import annotations

import hashlib
from typing import Any

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tool(number: int, comment: str | None = None, diameter: float | None = None, kind: str | None = None,
         holes: int = 0) -> dict[str, Any]:
    return {"tool": number, "comment": comment, "diameter_mm": diameter, "type": kind, "length_offset": number,
            "spindle_rpm": [2000.0], "feeds_mm_min": [300.0], "feed_mm": 100.0, "rapid_mm": 50.0, "holes": holes,
            "time_s": 30.0}


def program(path: str, *, content: str | None = None, number: str | None = None, folder: str = "shop",
            tools: list[dict[str, Any]] | None = None, offsets: list[str] | None = None, holes: int = 0,
            estimate_s: float | None = 100.0, header: list[str] | None = None, dialect: str = "fanuc",
            diagnostics: list[dict[str, Any]] | None = None, renamed_from: str | None = None) -> dict[str, Any]:
    """A ``ProgramRecord`` body; its sha256 is that of ``content`` (the path by default)."""
    estimate = None if estimate_s is None else {
        "profile": "vmc", "total_s": estimate_s, "feed_s": estimate_s * 0.6, "rapid_s": estimate_s * 0.1,
        "tool_changes": len(tools or []), "tool_change_s": estimate_s * 0.2, "dwell_s": estimate_s * 0.1}
    return {"sha256": sha(content or path), "path": path, "folder": folder, "renamed_from": renamed_from,
            "size": 1000, "mtime": T0, "lines": 120, "dialect": dialect, "number": number, "header": header or [],
            "units": "mm", "tools": tools or [], "offsets": offsets or [], "subprograms": [], "holes": holes,
            "feed_mm": 400.0, "rapid_mm": 900.0, "estimate": estimate, "diagnostics": diagnostics or []}


def document(seq: int, kind: str, key: str, body: dict[str, Any], *, at: float = 0.0, device: str | None = None,
             edge_ts: float = T0) -> dict[str, Any]:
    return {"seq": seq, "document": {"ts": edge_ts + at, "kind": kind, "key": key, "device": device,
                                     "source": "programs", "body": body}}


def program_doc(seq: int, body: dict[str, Any], *, at: float = 0.0, device: str | None = None,
                edge_ts: float = T0) -> dict[str, Any]:
    return document(seq, "program", body["sha256"], body, at=at, device=device, edge_ts=edge_ts)
