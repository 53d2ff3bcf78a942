"""``twincloud programs search|show|runs``: the harvested CNC programs and their runs, read from the database the
config names (the same answers as ``GET /api/v1/programs``, ``/programs/{sha256}`` and ``/.../runs``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from cloud.runs import Calibration, Run
from cloud.runsquery import device_runs, runs_of_program
from cloud.storage.base import Storage
from cloud.storage.programs import (
    ProgramQuery,
    ProgramRecordRow,
    UnknownProgram,
    normal_offset,
    program_copies,
    search_programs,
)
from shared.errors import InputError

__all__ = ["add_subcommands"]

Runner = Callable[[argparse.Namespace, Callable[[Storage], Awaitable[int]]], int]
_SHA = "a program's sha256 (64 hex digits), or its first 8 or more"


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}:{seconds:04.1f}" if minutes else f"{seconds:.1f} s"


def _time(name: str, text: str | None, default: float) -> int:
    if not text:
        return round(default * 1e6)
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"expected epoch seconds or ISO 8601 such as 2026-01-31T12:00:00Z (got {text!r})",
                             name) from None
        value = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return round(value * 1e6)


def _row_json(r: ProgramRecordRow) -> dict[str, Any]:
    body = r.body()
    return {"sha256": r.sha256, "edge": r.edge, "device": r.device, "folder": r.folder, "path": r.path,
            "number": r.number, "dialect": r.dialect, "tools": [t.get("tool") for t in body.get("tools", [])],
            "offsets": body.get("offsets", []), "holes": r.holes, "estimate_s": r.estimate_s, "errors": r.errors,
            "warnings": r.warnings, "first_seen": r.first_seen / 1e6, "last_seen": r.last_seen / 1e6}


async def _search(storage: Storage, args: argparse.Namespace) -> int:
    offset = None
    if args.offset:
        offset = normal_offset(args.offset)
        if offset is None:
            raise InputError(f"not a work offset: {args.offset!r}; write G54..G59 or G54.1 P1..P300", "--offset")
    rows = await search_programs(storage, ProgramQuery(
        args.edge, args.device, args.tool, args.diameter, offset, args.text, args.dialect, args.has_errors,
        args.min_holes, args.limit))
    if args.json:
        print(json.dumps([_row_json(r) for r in rows], indent=2))
        return 0
    for r in rows:
        tools = " ".join(f"T{t}" for t in _row_json(r)["tools"][:12])
        flag = f"  {r.errors} error(s)" if r.errors else ""
        print(f"{r.sha256[:12]}  {r.edge:<14} {r.number or '-':<8} {r.path:<40} est {_seconds(r.estimate_s):>9}  "
              f"{tools}{flag}")
    return 0


async def _resolve(storage: Storage, sha: str) -> list[ProgramRecordRow]:
    """The copies of a program named by its hash or a prefix of 8 or more hex digits."""
    text = sha.strip().lower()
    if not (8 <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)):
        raise InputError(f"{_SHA} (got {sha[:80]!r})", "sha256")
    if len(text) < 64:
        matches = {r.sha256 for r in await search_programs(storage, ProgramQuery(limit=100_000))
                   if r.sha256.startswith(text)}
        if len(matches) > 1:
            raise InputError(f"{text} names {len(matches)} programs; give more digits", "sha256")
        text = matches.pop() if matches else text
    copies = await program_copies(storage, text)
    if not copies:
        raise UnknownProgram(f"no program with sha256 {sha}", "sha256")
    return copies


async def _show(storage: Storage, args: argparse.Namespace) -> int:
    copies = await _resolve(storage, args.sha256)
    row = next((c for c in copies if args.edge is None or c.edge == args.edge), copies[0])
    body = row.body()
    if args.json:
        print(json.dumps({**_row_json(row), "record": body, "renames": row.rename_list(),
                          "copies": [{"edge": c.edge, "path": c.path} for c in copies if c is not row]}, indent=2))
        return 0
    print(f"{row.path}  ({row.folder} on edge {row.edge})  {row.number or 'no number'}  {row.dialect}, {row.units}")
    print(f"sha256 {row.sha256}  {row.lines:,} lines  first seen {_when(row.first_seen)}  last {_when(row.last_seen)}")
    for line in body.get("header", []):
        print(f"  ({line})")
    for t in body.get("tools", []):
        size = f"D{t['diameter_mm']:g} mm" if t.get("diameter_mm") is not None else ""
        print(f"  T{t.get('tool')}  {t.get('type') or '':<10} {size:<12} {t.get('comment') or ''}".rstrip())
    print(f"offsets {' '.join(body.get('offsets', [])) or '-'}  holes {row.holes}  feed {row.feed_mm:,.0f} mm  "
          f"rapid {row.rapid_mm:,.0f} mm  estimate {_seconds(row.estimate_s)}")
    for d in body.get("diagnostics", []):
        print(f"  line {d.get('line')}: {d.get('level')}: {d.get('message')}")
    for r in row.rename_list():
        print(f"  renamed {r.get('from')} -> {r.get('to')}")
    return 0


def _run_line(r: Run, calibration: Calibration | None) -> str:
    state = "completed" if r.completed else (r.end_state or "running").lower()
    linked = f"{r.sha256[:12]} {r.path}" if r.sha256 else "(no harvested program matches)"
    est = ""
    if r.estimate_s is not None:
        est = f"  est {_seconds(r.estimate_s)}"
        if calibration is not None:
            est += f" calibrated {_seconds(calibration.apply(r.estimate))}"
    return (f"{_when(r.start)}  {r.device:<14} {r.program or '-':<24} {_seconds(r.duration_s):>9}  {state:<15} "
            f"{linked}{est}")


def _run_json(r: Run, calibration: Calibration | None) -> dict[str, Any]:
    return {"device": r.device, "program": r.program, "start": r.start / 1e6,
            "end": None if r.end is None else r.end / 1e6, "duration_s": r.duration_s, "paused_s": r.paused_s,
            "completed": r.completed, "end_state": r.end_state, "sha256": r.sha256, "path": r.path,
            "estimate_s": r.estimate_s, "calibrated_s": calibration.apply(r.estimate) if calibration else None}


async def _runs(storage: Storage, args: argparse.Namespace) -> int:
    hi = _time("--to", args.to, time.time())
    lo = _time("--from", args.start, hi / 1e6 - 30 * 86400)
    if args.device:
        found = await device_runs(storage, args.device, lo, hi)
        runs, calibrations = found.runs, ({args.device: found.calibration} if found.calibration else {})
    elif args.sha256:
        copies = await _resolve(storage, args.sha256)
        runs, calibrations, _ = await runs_of_program(storage, copies[0].sha256, sorted({c.edge for c in copies}),
                                                      sorted({c.device for c in copies if c.device}), lo, hi)
    else:
        raise InputError("name a program (its sha256) or a machine (--device)", "sha256")
    if args.json:
        print(json.dumps({"runs": [_run_json(r, calibrations.get(r.device)) for r in runs],
                          "calibrations": [{"device": c.device, **c.fit.as_dict()} for c in calibrations.values()]},
                         indent=2))
        return 0
    for r in runs:
        print(_run_line(r, calibrations.get(r.device)))
    for c in calibrations.values():
        w = c.fit.weights
        how = (f"estimates x {w[0]:.3f}" if c.fit.method == "factor" else
               f"feed x {w[0]:.3f}, rapid x {w[1]:.3f}, tool changes x {w[2]:.3f}, dwell x {w[3]:.3f}, "
               f"+ {c.fit.constant:.1f} s")
        print(f"{c.device}: {how} from {c.runs} measured run(s)")
    if not runs:
        print("no runs in this time range", file=sys.stderr)
    return 0


_ACTIONS: dict[str, Callable[[Storage, argparse.Namespace], Awaitable[int]]] = {
    "search": _search, "show": _show, "runs": _runs}


def _handler(action: str, run: Runner) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        return run(args, lambda storage: _ACTIONS[action](storage, args))
    return handler


def _bounded(limit: int) -> Callable[[str], int]:
    def number(text: str) -> int:
        value = int(text)
        if not 0 <= value <= limit:
            raise ValueError(text)
        return value
    return number


def add_subcommands(sub: Any, run: Runner) -> None:
    group = sub.add_parser("programs", help="harvested CNC programs and their runs").add_subparsers(
        dest="programs_command", required=True)
    p = group.add_parser("search", help="programs by tool, work offset, feature and text, last reported first")
    p.add_argument("--tool", help="a T number (T12) or words of a tool's comment or type")
    p.add_argument("--diameter", type=float, help="a tool diameter in mm")
    p.add_argument("--offset", help="a work offset: G54..G59, G54.1 P1..")
    p.add_argument("--text", help="in the number, path and header comments")
    p.add_argument("--dialect", choices=["fanuc", "haas", "linuxcnc", "siemens", "okuma"])
    p.add_argument("--edge")
    p.add_argument("--device")
    errors = p.add_mutually_exclusive_group()
    errors.add_argument("--has-errors", dest="has_errors", action="store_true", default=None)
    errors.add_argument("--no-errors", dest="has_errors", action="store_false")
    p.add_argument("--min-holes", type=_bounded(10**9))
    p.add_argument("--limit", type=_bounded(10_000), default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler("search", run))
    p = group.add_parser("show", help="a program: header, tools, offsets, estimate, diagnostics, renames")
    p.add_argument("sha256", help=_SHA)
    p.add_argument("--edge", help="the copy of this edge")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler("show", run))
    p = group.add_parser("runs", help="a program's runs (or a machine's, --device) with measured durations and "
                                      "the calibrated estimate")
    p.add_argument("sha256", nargs="?", help=_SHA)
    p.add_argument("--device", help="a machine's runs instead")
    p.add_argument("--from", dest="start", help="epoch seconds or ISO 8601 (default 30 days before --to)")
    p.add_argument("--to", help="epoch seconds or ISO 8601 (default now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler("runs", run))
